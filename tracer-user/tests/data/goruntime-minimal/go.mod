module example.com/leaktracer-goruntime-minimal

go 1.19
