//! The files that let anyone (the host's `run`, a person, a test) use a running
//! simulator as if it were a real cluster: `kubeconfig`, `ca.pem`, `restart.sh`
//! (the rolling-restart command, via the control endpoint) and `site.toml`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where `Sim::write_files` put its files (absolute paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFiles {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub ca: PathBuf,
    pub restart_script: PathBuf,
    pub site: PathBuf,
}

pub(crate) struct Params<'a> {
    pub api_url: &'a str,
    pub ca_pem: &'a str,
    pub token: &'a str,
    pub namespace: &'a str,
    pub selector: &'a str,
    pub port: u16,
    /// The DNS name the pods' certificates carry instead of their IPs, if so.
    pub server_name: Option<&'a str>,
}

pub(crate) fn write(dir: &Path, p: &Params<'_>) -> anyhow::Result<SimFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Absolute paths: the site file and the script must work from any directory.
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let files = SimFiles {
        kubeconfig: dir.join("kubeconfig"),
        ca: dir.join("ca.pem"),
        restart_script: dir.join("restart.sh"),
        site: dir.join("site.toml"),
        dir,
    };
    let put = |path: &Path, text: &str| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    put(&files.ca, p.ca_pem)?;
    put(&files.kubeconfig, &kubeconfig(p))?;
    put(&files.restart_script, &restart_script(p, &files.ca))?;
    set_executable(&files.restart_script)?;
    put(&files.site, &site_toml(p, &files))?;
    Ok(files)
}

#[cfg(unix)]
fn set_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

fn kubeconfig(p: &Params<'_>) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sim
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: sim
  user:
    token: {token}
contexts:
- name: sim
  context:
    cluster: sim
    user: sim
    namespace: {ns}
current-context: sim
",
        server = p.api_url,
        ca = base64(p.ca_pem.as_bytes()),
        token = p.token,
        ns = p.namespace,
    )
}

/// Single-quote a string for bash.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn restart_script(p: &Params<'_>, ca: &Path) -> String {
    format!(
        r#"#!/usr/bin/env bash
# Rolling restart of the simulated cluster (cmk-sim), through its control endpoint.
# Exits non-zero when the restart fails (curl --fail-with-body).
set -euo pipefail
echo "cmk-sim: rolling restart via {url}/sim/v1/rolling-restart"
exec curl -sS --fail-with-body --cacert {ca} -H {auth} -X POST {url}/sim/v1/rolling-restart
"#,
        url = p.api_url,
        ca = sh_quote(&ca.display().to_string()),
        auth = sh_quote(&format!("Authorization: Bearer {}", p.token)),
    )
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn site_toml(p: &Params<'_>, f: &SimFiles) -> String {
    format!(
        "[cluster]
name = \"sim\"
kubeconfig = {kubeconfig}
namespace = {ns}
selector = {selector}
port = {port}

[tls]
ca = {ca}
{server_name}
[restart]
command = [{restart}]
timeout_secs = 120

[state]
dir = {state}
",
        kubeconfig = toml_str(&f.kubeconfig.display().to_string()),
        ns = toml_str(p.namespace),
        selector = toml_str(p.selector),
        port = p.port,
        ca = toml_str(&f.ca.display().to_string()),
        server_name = p
            .server_name
            .map_or_else(String::new, |n| format!("server_name = {}\n", toml_str(n))),
        restart = toml_str(&f.restart_script.display().to_string()),
        state = toml_str(&f.dir.join("state").display().to_string()),
    )
}

/// Standard base64 with padding (for `certificate-authority-data`).
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn writes_all_files_with_absolute_paths() {
        let tmp = std::env::temp_dir().join(format!("cmk-sim-files-{}", crate::random_hex(6)));
        let p = Params {
            api_url: "https://127.0.0.1:6443",
            ca_pem: "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n",
            token: "tok",
            namespace: "sdkms",
            selector: "app=sdkms",
            port: 4444,
            server_name: None,
        };
        let f = write(&tmp, &p).unwrap();
        let d = f.dir.display().to_string();
        let site = std::fs::read_to_string(&f.site).unwrap();
        assert_eq!(
            site,
            format!(
                "[cluster]\nname = \"sim\"\nkubeconfig = \"{d}/kubeconfig\"\nnamespace = \"sdkms\"\n\
                 selector = \"app=sdkms\"\nport = 4444\n\n[tls]\nca = \"{d}/ca.pem\"\n\n\
                 [restart]\ncommand = [\"{d}/restart.sh\"]\ntimeout_secs = 120\n\n\
                 [state]\ndir = \"{d}/state\"\n"
            )
        );
        let kc = std::fs::read_to_string(&f.kubeconfig).unwrap();
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        assert!(kc.contains(&format!(
            "certificate-authority-data: {}",
            base64(p.ca_pem.as_bytes())
        )));
        assert!(kc.contains("token: tok"));
        let script = std::fs::read_to_string(&f.restart_script).unwrap();
        assert!(script.contains("--fail-with-body"));
        assert!(script.contains(&format!("--cacert '{d}/ca.pem'")));
        assert!(script.contains("'Authorization: Bearer tok'"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f.restart_script)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
        }
        assert_eq!(std::fs::read_to_string(&f.ca).unwrap(), p.ca_pem);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
