//! `cmk-host keygen`, `sign` and `verify`: the operator's side of [`crate::trust`].

use std::path::Path;

use crate::cli::{KeygenArgs, SignArgs, VerifyArgs};
use crate::report::exit;
use crate::site::Site;
use crate::trust::keys::{self, SigningKey, VerifyingKey};
use crate::trust::{self, verify};
use crate::ui;

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
    let refused = |e: trust::Refusal| {
        let code = if e.is_refusal() {
            exit::REFUSED
        } else {
            exit::USAGE
        };
        let what = if e.is_refusal() { "refused: " } else { "" };
        ui::error(code, format!("{}: {what}{e}", args.component.display()))
    };
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
        Err(e) => return ui::error(exit::USAGE, e),
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
