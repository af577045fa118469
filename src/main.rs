/// glibc's allocator cost a fifth of the server's CPU under load (events,
/// JSON, SQLite rows); mimalloc is markedly cheaper for this pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sandstep::cli::main()
}
