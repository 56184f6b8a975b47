module example.com/leaktracer-goruntime

go 1.19
