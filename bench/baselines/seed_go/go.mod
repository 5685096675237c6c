module seed_go

go 1.19
