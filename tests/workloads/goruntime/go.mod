module example.com/leaktracer-goruntime-workloads

go 1.19
