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

/// Ctrl-C at the confirmation before activate, typed on the terminal: the question
/// ends at once (no waiting for Enter), the run stops before activating, and a `yes`
/// typed after it is no answer: nothing is logged as confirmed, nothing activated.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_at_the_confirmation_cancels_it_and_a_later_yes_confirms_nothing() {
    let cluster = cmk_tests::Cluster::pods(3).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(cmk_tests::ROTATE_WASM);
    let session = cmk_tests::TerminalSession::start(BIN, &["run", &component, "--site", &site]);
    let session = tokio::task::spawn_blocking(move || {
        session.wait_for("Type `yes` to go on: ");
        session
    })
    .await
    .unwrap();
    let at_question = cluster.oracle();
    assert_eq!(at_question.restarts.len(), 1, "asked after restart-load");
    assert!(at_question.activates().is_empty());

    let (code, screen) = tokio::task::spawn_blocking(move || {
        let mut session = session;
        session.type_text("\x03");
        session.wait_for("interrupted");
        session.type_text("yes\r");
        session.wait()
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{screen}");
    assert!(!screen.contains("confirmed by the operator"), "{screen}");
    assert!(!screen.contains("activating"), "{screen}");
    assert!(screen.contains("interrupted"), "{screen}");
    let oracle = cluster.oracle();
    assert!(
        oracle.activates().is_empty(),
        "nothing activated: {oracle:#?}"
    );
    assert_eq!(oracle.version, 1);
    assert!(oracle.broken_pods().is_empty());
}

/// A second Ctrl-C at the question exits at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_at_the_confirmation_exits_at_once() {
    let cluster = cmk_tests::Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(cmk_tests::ROTATE_WASM);
    let session = cmk_tests::TerminalSession::start(BIN, &["run", &component, "--site", &site]);
    let (code, screen) = tokio::task::spawn_blocking(move || {
        let mut session = session;
        session.wait_for("Type `yes` to go on: ");
        session.type_text("\x03");
        session.wait_for("interrupted");
        session.type_text("\x03");
        session.wait()
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{screen}");
    assert!(!screen.contains("confirmed by the operator"), "{screen}");
    assert!(cluster.oracle().activates().is_empty());
}

/// A fleet on a terminal: one live line per cluster, redrawn in place, whose first
/// frame already names the cluster and its state; then the table. With `NO_COLOR`,
/// plain lines prefixed with each cluster's name instead, and no escape at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_on_a_terminal_has_one_live_line_per_cluster() {
    let (code, screen) = run_on_terminal(BIN, &["demo", "--clusters", "3"], &[]).await;
    assert_eq!(code, 0, "{screen}");
    for c in ["sim-0", "sim-1", "sim-2"] {
        // Each line is a spinner from its first frame: its name, then its state.
        let first = screen.find(c).unwrap_or_else(|| panic!("{c}: {screen:?}"));
        assert!(
            screen[first..].starts_with(&format!("{c} waiting (0s)")),
            "{c}'s first frame: {:?}",
            &screen[first..(first + 40).min(screen.len())]
        );
        assert!(
            screen.contains(&format!("{c} ▶ restart-load")),
            "{screen:?}"
        );
        assert!(
            !screen.contains(&format!("[{c}]")),
            "no plain lines: {screen:?}"
        );
    }
    assert!(
        screen.contains(&format!("{ESC}1A")),
        "redrawn in place: {screen:?}"
    );
    assert!(screen.contains("3 clusters in"), "{screen}");

    let (code, plain) =
        run_on_terminal(BIN, &["demo", "--clusters", "3"], &[("NO_COLOR", "1")]).await;
    assert_eq!(code, 0, "{plain}");
    assert!(!plain.contains(ESC), "{plain:?}");
    for c in ["sim-0", "sim-1", "sim-2"] {
        assert!(
            plain.contains(&format!("[{c}] │ ▶ restart-load")),
            "{plain}"
        );
        assert!(plain.contains(&format!("[{c}] ✓ done 1 -> 2")), "{plain}");
    }
}
