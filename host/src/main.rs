use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(cmk_host::cli::main())
}
