//! `cmk-host keygen`, `sign` and `verify`: the operator's side of [`crate::trust`].

use std::path::{Path, PathBuf};

use clap::Args;

use crate::exit;
use crate::launch::Failure;
use crate::site::Site;
use crate::trust::keys::{self, SigningKey, VerifyingKey};
use crate::trust::{self, verify};
use crate::ui;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Writes NAME.key and NAME.pub; refuses to overwrite either.
    #[arg(long, value_name = "NAME")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The secret key (from `keygen`); must not be readable by others.
    #[arg(long, value_name = "NAME.key")]
    pub key: PathBuf,
    /// The component to sign, exactly as it will be run (the signature covers its bytes).
    #[arg(value_name = "IN.wasm")]
    pub component: PathBuf,
    /// Where to write the signed component (or, with --detached, the signature).
    #[arg(short = 'o', long = "output", value_name = "OUT.wasm")]
    pub output: PathBuf,
    /// Write a detached signature to OUT instead of a signed copy of the component.
    #[arg(long)]
    pub detached: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("trusted").required(true).args(["key", "site"])))]
pub struct VerifyArgs {
    /// Verify with this public key.
    #[arg(long, value_name = "NAME.pub")]
    pub key: Option<PathBuf>,
    /// Verify with the site file's [[trust.signer]] keys, and show the grants.
    #[arg(long, value_name = "SITE.toml")]
    pub site: Option<PathBuf>,
    /// The component whose signature to check (signed, or with --signature).
    #[arg(value_name = "IN.wasm")]
    pub component: PathBuf,
    /// A detached signature (from `sign --detached`), for a component without one.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
}

pub fn keygen(args: &KeygenArgs) -> u8 {
    match keys::generate(&args.out) {
        Ok(files) => {
            println!("key id: {}", files.id);
            println!(
                "wrote {} (secret, mode 0600) and {}",
                files.secret.display(),
                files.public.display()
            );
            exit::DONE
        }
        Err(e) => ui::error(exit::USAGE, e),
    }
}

pub fn sign(args: &SignArgs) -> u8 {
    let key = match SigningKey::load(&args.key) {
        Ok(key) => key,
        Err(e) => return ui::error(exit::USAGE, e),
    };
    let bytes = match read(&args.component) {
        Ok(bytes) => bytes,
        Err(e) => return ui::error(exit::USAGE, e),
    };
    let signed = if args.detached {
        verify::sign_detached(&bytes, &key)
    } else {
        verify::sign(&bytes, &key)
    };
    let out = match signed {
        Ok(out) => out,
        Err(e) => return ui::error(exit::USAGE, format!("{}: {e}", args.component.display())),
    };
    if let Err(e) = std::fs::write(&args.output, out) {
        return ui::error(
            exit::FAILED,
            format!("cannot write {}: {e}", args.output.display()),
        );
    }
    let what = if args.detached {
        "detached signature"
    } else {
        "signed component"
    };
    println!(
        "signed {} with key {}; wrote the {what} to {}",
        args.component.display(),
        key.id(),
        args.output.display()
    );
    exit::DONE
}

pub fn verify(args: &VerifyArgs) -> u8 {
    let bytes = match read(&args.component) {
        Ok(bytes) => bytes,
        Err(e) => return ui::error(exit::USAGE, e),
    };
    let detached = match args.signature.as_deref().map(read).transpose() {
        Ok(sig) => sig,
        Err(e) => return ui::error(exit::USAGE, e),
    };
    let refused = |e: trust::Refusal| Failure::refusal(&args.component, &e, "", None).report();
    if let Some(path) = &args.key {
        let key = match VerifyingKey::load(path) {
            Ok(key) => key,
            Err(e) => return ui::error(exit::USAGE, e),
        };
        return match verify::verify(&bytes, detached.as_deref(), &[&key]) {
            Ok(v) => {
                println!(
                    "verified: signed by {} (key id {})",
                    path.display(),
                    v.key_id
                );
                exit::DONE
            }
            Err(e) => refused(e),
        };
    }
    let Some(site_path) = &args.site else {
        return ui::error(exit::USAGE, "verify needs --key or --site");
    };
    let site = match Site::load(site_path) {
        Ok(site) => site,
        Err(e) => return Failure::from(e).report(),
    };
    let request = trust::Request {
        allow_unsigned: false,
        detached: detached.as_deref(),
    };
    match trust::admit(&bytes, &site.trust, &site.grants(), &request) {
        Ok(admitted) => {
            println!(
                "verified: signed by {} (key id {})",
                admitted.signer.unwrap_or_default(),
                admitted.key_id.map(|k| k.0).unwrap_or_default()
            );
            println!("grants: {}", admitted.grants);
            exit::DONE
        }
        Err(e) => refused(e),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
