"""Operations: metrics, log masking, deliberate test faults."""
