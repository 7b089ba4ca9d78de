//! Strict configuration (issue 12): a hub or node whose configuration file has an unknown key
//! or section, or whose environment has an unknown `RCPFED_HUB_*` / `RCPFED_NODE_*` variable,
//! refuses to start and names it with the closest valid name; a bad value is named by its real
//! key. The variables of the client commands (`RCPFED_HUB_ENDPOINT`, `RCPFED_NODE_ENDPOINT`)
//! do not stop a hub or node.

use crate::harness::{BIN, Cluster, pki_init};
use std::path::Path;
use std::time::Duration;

/// Runs `rcpfed <role> --config <config>` with `env`; it must exit non-zero within 20 s, having
/// written no address file. Returns its stderr.
async fn refused_start(role: &str, config: &Path, env: &[(&str, &str)]) -> String {
    let dir = config.parent().unwrap();
    let addr_file = dir.join(format!("{role}.addr.json"));
    let run = tokio::process::Command::new(BIN.as_str())
        .arg(role)
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .arg("--addr-file")
        .arg(&addr_file)
        .envs(env.iter().copied())
        .env("RCPFED_LOG", "info")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("rcpfed {role} --config {} kept running", config.display()))
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "rcpfed {role} started:\n{stderr}");
    assert!(!addr_file.exists(), "rcpfed {role} listened:\n{stderr}");
    stderr
}

/// The one `error: …` line of `stderr`.
fn error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    errors[0]
}

/// `<fed>/<name>.toml` edited by `edit`, written as `<fed>/<new_name>`.
fn edited(
    fed: &Path,
    name: &str,
    new_name: &str,
    edit: impl Fn(&str) -> String,
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fed.join(format!("{name}.toml"))).unwrap();
    let path = fed.join(new_name);
    std::fs::write(&path, edit(&text)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_sections_and_variables_stop_hub_and_node_with_the_closest_name() {
    let tmp = tempfile::tempdir().unwrap();
    let fed = tmp.path().join("fed");
    pki_init(&fed);

    // `listn = …` used to start the hub on the default port.
    let typo = edited(&fed, "hub", "hub-typo.toml", |t| {
        t.replacen("listen = ", "listn = ", 1)
    });
    let stderr = refused_start("hub", &typo, &[]).await;
    assert_eq!(
        error_line(&stderr),
        format!(
            "error: unknown key listn in {} (did you mean listen?)",
            typo.display()
        )
    );

    // `[tsl]` used to end in a confusing error about tls.ca_cert.
    let section = edited(&fed, "colombo", "colombo-tsl.toml", |t| {
        t.replace("[tls]", "[tsl]")
    });
    let stderr = refused_start("node", &section, &[]).await;
    let line = error_line(&stderr);
    assert!(
        line.contains("unknown section [tsl]") && line.ends_with("(did you mean [tls]?)"),
        "{line}"
    );
    assert!(!line.contains("ca_cert"), "{line}");

    // A key of the top level written under [tls].
    let misplaced = edited(&fed, "hub", "hub-misplaced.toml", |t| {
        format!("{t}witness_quorum = 2\n")
    });
    let line = refused_start("hub", &misplaced, &[]).await;
    assert!(
        error_line(&line).contains("witness_quorum") && line.contains("inside [tls]"),
        "{line}"
    );

    // Unknown environment variables.
    let config = fed.join("colombo.toml");
    let stderr = refused_start(
        "node",
        &config,
        &[("RCPFED_NODE_WITNES_INTERVAL_MS", "100")],
    )
    .await;
    assert_eq!(
        error_line(&stderr),
        "error: unknown environment variable RCPFED_NODE_WITNES_INTERVAL_MS (did you mean RCPFED_NODE_WITNESS_INTERVAL_MS?)"
    );
    let stderr = refused_start(
        "hub",
        &fed.join("hub.toml"),
        &[("RCPFED_HUB_TLS_CERT", "x.pem")],
    )
    .await;
    assert!(
        error_line(&stderr).ends_with("(did you mean RCPFED_HUB_TLS__CERT?)"),
        "{stderr}"
    );

    // A bad value is named by its key, never figment's `default.tls.cert`.
    let bad_value = edited(&fed, "hub", "hub-bad-value.toml", |t| {
        t.lines()
            .map(|l| {
                if l.starts_with("cert = ") {
                    "cert = 5".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let stderr = refused_start("hub", &bad_value, &[]).await;
    let line = error_line(&stderr);
    assert!(
        line.starts_with("error: tls.cert: ") && line.contains("hub-bad-value.toml"),
        "{line}"
    );
    assert!(!stderr.contains("default."), "{stderr}");
    let stderr = refused_start(
        "node",
        &config,
        &[("RCPFED_NODE_HUB_CALL_TIMEOUT_MS", "soon")],
    )
    .await;
    let line = error_line(&stderr);
    assert!(
        line.starts_with("error: hub_call_timeout_ms: ")
            && line.ends_with("(from RCPFED_NODE_HUB_CALL_TIMEOUT_MS)"),
        "{line}"
    );
}

/// `RCPFED_HUB_ENDPOINT` (the client commands' `--hub`) and `RCPFED_NODE_ENDPOINT` (`rcpfed
/// publish --node`) may be set in an operator's shell: they do not stop a hub or a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_variables_do_not_stop_a_hub_or_node() {
    let c = Cluster::start_with_env(
        &["colombo"],
        &[
            ("RCPFED_HUB_ENDPOINT", "https://localhost:1"),
            ("RCPFED_NODE_ENDPOINT", "https://localhost:1"),
        ],
    )
    .await;
    assert!(c.node_status("colombo").await.node_id == "colombo");
}
