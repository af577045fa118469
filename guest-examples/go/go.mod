module sandstep.example/invoice

go 1.21
