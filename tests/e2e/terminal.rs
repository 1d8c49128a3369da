//! What a terminal shows: escape sequences (colour, spinners) only where the
//! operator wants them. `NO_COLOR` and `--color never` mean none at all; `--color
//! always` colours even a pipe. Driven through a real pseudo-terminal.

use cmk_tests::{run, run_on_terminal};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");
const ESC: &str = "\x1b[";

#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_the_demo_uses_escapes_by_default() {
    // The baseline that makes the tests below mean something: on a terminal, with
    // nothing said, log lines are coloured and steps are spinners.
    let (code, screen) = run_on_terminal(BIN, &["demo"], &[]).await;
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(ESC), "{screen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_color_means_no_escape_sequences_on_a_terminal() {
    let (code, screen) = run_on_terminal(BIN, &["demo"], &[("NO_COLOR", "1")]).await;
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains(ESC), "{screen:?}");
    assert!(screen.contains("✓ verify-activated done"), "{screen}");
    assert!(screen.contains("version:  1 -> 2"), "{screen}");

    let (code, help) = run_on_terminal(BIN, &["--help"], &[("NO_COLOR", "1")]).await;
    assert_eq!(code, 0, "{help}");
    assert!(!help.contains(ESC), "{help:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn color_never_means_no_escape_sequences_on_a_terminal() {
    let (code, screen) = run_on_terminal(BIN, &["--color", "never", "demo"], &[]).await;
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains(ESC), "{screen:?}");
    assert!(screen.contains("✓ verify-activated done"), "{screen}");

    let (code, help) = run_on_terminal(BIN, &["--color=never", "run", "--help"], &[]).await;
    assert_eq!(code, 0, "{help}");
    assert!(!help.contains(ESC), "{help:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn color_always_colours_even_a_pipe_and_outranks_no_color() {
    let out = run(BIN, &["demo", "--color", "always"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains(ESC), "{out}");
    // The summary on stdout stays plain text: it is what scripts and people copy.
    assert!(!out.stdout.contains(ESC), "{out}");

    let (code, screen) =
        run_on_terminal(BIN, &["--color", "always", "demo"], &[("NO_COLOR", "1")]).await;
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(ESC), "{screen:?}");
}
