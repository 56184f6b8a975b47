module example.com/leaktracer-gobin

go 1.19
