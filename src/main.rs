//! The `hookwise` binary: parse the command line and hand over to the library.

// glibc malloc showed up as ~13% of the ack path's CPU (many small, cross-thread frees).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hookwise::cli::main()
}
