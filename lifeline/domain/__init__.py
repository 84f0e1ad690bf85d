"""Domain building blocks shared by every service: ids, meta, aggregates, clock, values. No I/O."""
