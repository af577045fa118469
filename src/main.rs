fn main() -> std::process::ExitCode {
    sandstep::cli::main()
}
