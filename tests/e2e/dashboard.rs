//! The dashboard in a real browser: `rcpfed demo` runs the whole federation (hub, three nodes,
//! the sample data, the conflict and the revision), and headless Chromium driven by Playwright
//! (tests/e2e/dashboard.cjs) loads the hub's dashboard, and a node's from its mirror, and
//! checks what a person would see.
//! Screenshots go to `target/e2e-artifacts/`.
//!
//! Needs node, playwright-core in `.tools/` and Chromium (`scripts/install-tools.sh` installs
//! them). Without them the test says so and stops; with `RCPFED_REQUIRE_BROWSER=1`
//! (scripts/test.sh sets it) it fails instead.

use crate::harness::BIN;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// A policy summary whose texts are markup and script: the page must show them as text.
const MARKUP_POLICY: &str = r#"document = "regions/colombo/policies/markup-is-text"
status = "draft"
gcm_objectives = [23]

[title]
en = "<img src=x onerror=\"document.body.dataset.injected='title'\"><script>document.body.dataset.injected='script'</script> & co"

[summary]
en = "<b>not bold</b> <a href=\"javascript:document.body.dataset.injected='link'\">not a link</a>"
"#;

/// Debian's chromium; `RCPFED_CHROMIUM` names another executable.
fn chromium() -> PathBuf {
    std::env::var_os("RCPFED_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The browser tools, or why they are missing.
fn browser_tools() -> Result<PathBuf, String> {
    let playwright = workspace_root().join(".tools/node_modules/playwright-core");
    if !playwright.join("package.json").is_file() {
        return Err(format!(
            "playwright-core is not installed at {}; run scripts/install-tools.sh",
            playwright.display()
        ));
    }
    let browser = chromium();
    if !browser.is_file() {
        return Err(format!(
            "{} is missing; run scripts/install-tools.sh (Debian package chromium)",
            browser.display()
        ));
    }
    match std::process::Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(playwright),
        _ => Err("node is not on PATH".into()),
    }
}

/// `target/`, from the binary's place in `target/<profile>/rcpfed`.
fn target_dir() -> PathBuf {
    Path::new(BIN.as_str())
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| workspace_root().join("target"), Path::to_path_buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_demo_federation_in_a_browser() {
    let playwright = match browser_tools() {
        Ok(p) => p,
        Err(why) => {
            assert!(
                std::env::var("RCPFED_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "RCPFED_REQUIRE_BROWSER=1 but the browser test cannot run: {why}"
            );
            eprintln!("SKIPPED the dashboard browser test: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let demo_log = tmp.path().join("demo.stderr");
    let mut demo = tokio::process::Command::new(BIN.as_str())
        .args(["demo", "--timeout-secs", "60", "--dir"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&demo_log).expect("demo log"))
        .kill_on_drop(true)
        .spawn()
        .expect("starting rcpfed demo");
    let mut lines = BufReader::new(demo.stdout.take().expect("piped stdout")).lines();
    let mut seen = String::new();
    let mut url = None;
    let mut node_url = None;
    let mut colombo_grpc = None;
    // The demo prints the dashboard URL early and "running" once the exchange, the conflict,
    // the revision and the coherence report that lists them are all verified.
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("reading the demo's output") {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(u) = line
                .trim()
                .strip_prefix("the dashboard (public, read-only): ")
            {
                url = Some(u.to_string());
            }
            // "node colombo   listening on … (mTLS), public HTTPS https://localhost:<port>/"
            if let Some(rest) = line.trim().strip_prefix("node colombo")
                && let Some((_, u)) = rest.split_once("public HTTPS ")
            {
                node_url = Some(format!("{}dashboard/", u.trim()));
                colombo_grpc = rest
                    .split_once("listening on ")
                    .and_then(|(_, a)| a.split_whitespace().next())
                    .and_then(|a| a.rsplit(':').next())
                    .map(str::to_string);
            }
            if line.starts_with("running; press Ctrl-C") {
                return true;
            }
        }
        false
    })
    .await;
    let stderr = || std::fs::read_to_string(&demo_log).unwrap_or_default();
    assert!(
        matches!(ready, Ok(true)),
        "the demo did not get to running:\n{seen}\n{}",
        stderr()
    );
    let url = url.unwrap_or_else(|| panic!("the demo printed no dashboard URL:\n{seen}"));
    assert!(
        url.starts_with("https://localhost:") && url.ends_with("/dashboard/"),
        "{url}"
    );

    let node_url =
        node_url.unwrap_or_else(|| panic!("the demo printed no public URL for colombo:\n{seen}"));
    let artifacts = target_dir().join("e2e-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts directory");
    let profiles = tmp.path().join("browser-profiles");
    for checks in ["demo", "markup"] {
        std::fs::create_dir_all(profiles.join(checks)).expect("profiles directory");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard.cjs");
    let browse = |checks: &'static str| {
        let run = tokio::process::Command::new("node")
            .arg(&script)
            .env("CHECKS", checks)
            .env("DASHBOARD_URL", &url)
            .env("NODE_DASHBOARD_URL", &node_url)
            .env("ARTIFACTS_DIR", &artifacts)
            .env("PLAYWRIGHT_CORE", &playwright)
            .env("CHROMIUM", chromium())
            .env("PROFILE_ROOT", profiles.join(checks))
            .kill_on_drop(true)
            .output();
        async move {
            tokio::time::timeout(Duration::from_secs(180), run)
                .await
                .expect("the browser checks finish within 180 s")
                .expect("running node")
        }
    };
    let mut out = browse("demo").await;
    let demo_checks = String::from_utf8_lossy(&out.stdout).into_owned();
    // Then markup in a document's text: shown as text, never run. Published after the demo
    // checks, since the report it causes no longer lists the demo's revision.
    if out.status.success() {
        let port = colombo_grpc
            .clone()
            .unwrap_or_else(|| panic!("the demo printed no gRPC address for colombo:\n{seen}"));
        let policy = tmp.path().join("markup.toml");
        std::fs::write(&policy, MARKUP_POLICY).expect("policy file");
        let published = tokio::process::Command::new(BIN.as_str())
            .args(["publish", "--pki"])
            .arg(&dir)
            .args(["--node", &format!("https://localhost:{port}"), "policy"])
            .arg(&policy)
            .output()
            .await
            .expect("running rcpfed publish");
        assert!(
            published.status.success(),
            "publishing the markup policy: {}{}",
            String::from_utf8_lossy(&published.stdout),
            String::from_utf8_lossy(&published.stderr)
        );
        out = browse("markup").await;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let browser_stderr = String::from_utf8_lossy(&out.stderr);

    // SIGTERM lets the demo stop its hub and nodes (a SIGKILL would leave them running).
    if let Some(pid) = demo.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), demo.wait()).await;

    assert!(
        out.status.success(),
        "browser checks failed ({}):\n{stdout}\n{browser_stderr}",
        out.status
    );
    assert!(
        stdout.contains("dashboard markup checks passed"),
        "{stdout}\n{browser_stderr}"
    );
    for shot in ["dashboard-laptop.png", "dashboard-phone.png"] {
        let bytes = std::fs::metadata(artifacts.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(bytes > 10_000, "screenshot {shot} is missing or empty");
    }
    assert!(
        demo_checks.contains("dashboard browser checks passed"),
        "{demo_checks}"
    );
    println!("{demo_checks}{stdout}");
}
