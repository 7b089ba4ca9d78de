//! The binary's command line as an operator first meets it. Also why this file exists: with an
//! integration test in this package, `cargo test --workspace` builds the `rcpfed` binary before
//! any test runs, so the end-to-end suite (`tests/e2e`, package `rcpfed-e2e`) always drives the
//! binary built from the current source.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rcpfed");

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running rcpfed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn help_lists_the_commands_an_operator_needs() {
    let (ok, text) = run(&["--help"]);
    assert!(ok, "{text}");
    for command in ["hub", "node", "pki", "publish", "demo"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`rcpfed --help` does not list {command}:\n{text}"
        );
    }
}

#[test]
fn an_unknown_command_fails_and_says_so() {
    let (ok, text) = run(&["frobnicate"]);
    assert!(!ok, "an unknown command succeeded: {text}");
    assert!(text.contains("frobnicate"), "{text}");
}
