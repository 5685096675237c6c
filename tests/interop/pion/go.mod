module pionwhip

go 1.19
