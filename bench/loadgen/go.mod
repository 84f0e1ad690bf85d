module lifeline/bench/loadgen

go 1.22
