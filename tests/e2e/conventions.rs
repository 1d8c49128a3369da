//! The conventions an operator expects of a command-line tool: `--version` that
//! says what runs the components, and shell completions.

use cmk_tests::run;

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

#[tokio::test(flavor = "multi_thread")]
async fn version_names_the_host_wasmtime_and_the_wit_package() {
    let out = run(BIN, &["--version"]).await;
    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], format!("cmk-host {}", env!("CARGO_PKG_VERSION")));
    assert!(lines[1].starts_with("wasmtime 48."), "{out}");
    assert!(lines[2].starts_with("wit cmk:procedure@"), "{out}");
    let wit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/procedure.wit"))
        .unwrap();
    let package = lines[2].strip_prefix("wit ").unwrap();
    assert!(wit.contains(&format!("package {package};")), "{package}");

    let short = run(BIN, &["-V"]).await;
    assert_eq!(short.stdout.trim(), lines[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_for_bash_zsh_and_fish() {
    let bash = run(BIN, &["completions", "bash"]).await;
    assert_eq!(bash.code, 0, "{bash}");
    // The script is valid bash and registers completion for cmk-host, with its
    // subcommands among the words it offers.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cmk-host.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p cmk-host",
            script.display()
        ))
        .output()
        .expect("run bash");
    assert!(check.status.success(), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("cmk-host"));
    for sub in ["run", "demo", "sim", "status", "completions"] {
        assert!(bash.stdout.contains(sub), "{sub} in the bash completions");
    }

    let zsh = run(BIN, &["completions", "zsh"]).await;
    assert_eq!(zsh.code, 0, "{zsh}");
    assert!(zsh.stdout.starts_with("#compdef cmk-host"), "{zsh}");
    let fish = run(BIN, &["completions", "fish"]).await;
    assert_eq!(fish.code, 0, "{fish}");
    assert!(fish.stdout.contains("complete -c cmk-host"), "{fish}");

    let other = run(BIN, &["completions", "tcsh"]).await;
    assert_eq!(other.code, 2, "an unknown shell is a usage error: {other}");
}

/// `cmk-host man`: the program's page on stdout, a subcommand's page by name, every
/// page into a folder (as packagers install them), and a usage error that lists the
/// commands for a name that has no page.
#[tokio::test(flavor = "multi_thread")]
async fn manual_pages_for_the_program_and_each_subcommand() {
    let top = run(BIN, &["man"]).await;
    assert_eq!(top.code, 0, "{top}");
    assert!(top.stdout.contains(".TH cmk-host 1  \"cmk-host "), "{top}");
    for sub in ["run", "fleet", "status", "demo", "sim", "audit", "man"] {
        assert!(
            top.stdout.contains(&format!("cmk\\-host\\-{sub}(1)")),
            "{sub}: {top}"
        );
    }
    let run_page = run(BIN, &["man", "run"]).await;
    assert_eq!(run_page.code, 0, "{run_page}");
    assert!(run_page.stdout.contains(".TH cmk-host-run 1"), "{run_page}");
    assert!(run_page.stdout.contains("\\-\\-site"), "{run_page}");

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = run(BIN, &["man", "--dir", pages.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out}");
    for page in [
        "cmk-host.1",
        "cmk-host-run.1",
        "cmk-host-fleet.1",
        "cmk-host-fleet-job.1",
        "cmk-host-audit-verify.1",
    ] {
        let text =
            std::fs::read_to_string(pages.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        let name = page.trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {name} 1")), "{page}");
    }

    let unknown = run(BIN, &["man", "rotate"]).await;
    assert_eq!(unknown.code, 2, "{unknown}");
    assert!(
        unknown
            .stderr
            .contains("error: no command `rotate` has a manual page; one of: run, fleet,"),
        "{unknown}"
    );
}
