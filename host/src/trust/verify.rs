//! Signing and verifying components: the WebAssembly tool-conventions signature
//! format, as implemented by `wasmsign2` (Ed25519 over SHA-256 of every byte after
//! the signature section, embedded as the `signature` custom section or detached).
//!
//! What this module adds to `wasmsign2`, and why:
//! - only components are accepted: the 8-byte preamble is not covered by the
//!   signature, so it must be the component preamble exactly;
//! - partial signatures (`signature_delimiter` sections) are refused: they let a
//!   prefix of a signed file verify, and a procedure must be verified whole;
//! - a refusal says which key ids the signature names, so an operator can tell "not
//!   trusted here" from "modified after signing".

use std::io::Cursor;

use wasmsign2::{Module, Section, WSError};

use super::keys::{KeyId, SigningKey, VerifyingKey};

/// The preamble of a component binary (`\0asm`, version 0x0d, layer 1).
pub const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
/// The preamble of a core module (`\0asm`, version 1, layer 0).
const MODULE_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// Why a component was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a component binary at all: a usage error, not a signature refusal.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("not signed")]
    NotSigned,
    #[error("the signature section cannot be read ({0}): modified or damaged")]
    Malformed(String),
    #[error(
        "partially signed (it has `signature_delimiter` sections); this host verifies components whole"
    )]
    Partial,
    #[error("signed by key {}, which is not trusted here", list(.0))]
    Untrusted(Vec<KeyId>),
    #[error(
        "the signature by key {0} does not match the component's bytes: modified after signing"
    )]
    Mismatch(KeyId),
}

impl Refusal {
    /// Whether this is a refusal (exit 3) rather than a wrong file (exit 2).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Refusal::NotAComponent(_))
    }
}

fn list(ids: &[KeyId]) -> String {
    if ids.is_empty() {
        return "(no key id in the signature)".into();
    }
    ids.iter()
        .map(|id| id.0.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A signature that verified: the index of the key (in the order given) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_index: usize,
    pub key_id: KeyId,
}

/// One component's bytes (and detached signature) and the verifications made of
/// them, remembered by the keys each was made with: the sites of a fleet that trust
/// the same signers verify the bytes once. Each entry is keyed by the whole public
/// keys, in order, so a site with other keys, or the same keys in another order
/// (the first key that verifies names the signer), verifies afresh.
pub struct Verifier<'a> {
    bytes: &'a [u8],
    detached: Option<&'a [u8]>,
    done: std::sync::Mutex<Vec<Verification>>,
    sha256: std::sync::OnceLock<String>,
}

/// The public keys (whole, in order) and what verifying with them gave.
type Verification = (Vec<Vec<u8>>, Result<Verified, Refusal>);

impl<'a> Verifier<'a> {
    pub fn new(bytes: &'a [u8], detached: Option<&'a [u8]>) -> Verifier<'a> {
        Verifier {
            bytes,
            detached,
            done: Default::default(),
            sha256: Default::default(),
        }
    }

    /// The SHA-256 of the bytes, in hex (computed once).
    pub fn sha256(&self) -> &str {
        self.sha256
            .get_or_init(|| crate::digest::sha256_hex(self.bytes))
    }

    /// [`verify`] of the bytes with `keys`, once for each list of keys.
    pub fn verify(&self, keys: &[&VerifyingKey]) -> Result<Verified, Refusal> {
        let id: Vec<Vec<u8>> = keys.iter().map(|k| k.key.to_bytes()).collect();
        let mut done = self.done.lock().expect("verifier lock");
        if let Some((_, result)) = done.iter().find(|(k, _)| *k == id) {
            return result.clone();
        }
        let result = verify(self.bytes, self.detached, keys);
        done.push((id, result.clone()));
        result
    }
}

/// Checks the component preamble.
fn check_preamble(bytes: &[u8]) -> Result<(), Refusal> {
    match bytes.get(..8) {
        Some(p) if p == COMPONENT_PREAMBLE => Ok(()),
        Some(p) if p == MODULE_PREAMBLE => Err(Refusal::NotAComponent(
            "it is a core module; this host runs components".into(),
        )),
        _ => Err(Refusal::NotAComponent(
            "it does not start with the component preamble".into(),
        )),
    }
}

/// The custom section holding an embedded signature, and wasmsign2's maxima
/// (`sig_sections.rs`; not exported).
const SIGNATURE_SECTION: &str = "signature";
const MAX_HASHES: usize = 64;
const MAX_SIGNATURES: usize = 256;

/// Bytes read by the length pre-check: every length it reads must fit in what is
/// left of the buffer that holds it.
struct Bounded<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Where `bytes` starts in the file, for the message.
    base: usize,
}

impl<'a> Bounded<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Bounded { bytes, at: 0, base }
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn too_short(&self, what: &str) -> Refusal {
        Refusal::Malformed(format!(
            "{what} at byte {} runs past the end of the file",
            self.base + self.at
        ))
    }

    fn byte(&mut self, what: &str) -> Result<u8, Refusal> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.too_short(what))?;
        self.at += 1;
        Ok(b)
    }

    /// An unsigned LEB128 of at most 32 bits, as wasmsign2 reads them.
    fn varint(&mut self, what: &str) -> Result<usize, Refusal> {
        let mut v: u64 = 0;
        for i in 0..5 {
            let b = self.byte(what)?;
            v |= u64::from(b & 0x7f) << (i * 7);
            if b & 0x80 == 0 {
                return u32::try_from(v)
                    .map(|v| v as usize)
                    .map_err(|_| Refusal::Malformed(format!("{what}: a length over 32 bits")));
            }
        }
        Err(Refusal::Malformed(format!(
            "{what}: a length of more than 5 bytes"
        )))
    }

    /// A length, then that many bytes, which must be there.
    fn slice(&mut self, what: &str) -> Result<Bounded<'a>, Refusal> {
        let at = self.base + self.at;
        let len = self.varint(what)?;
        if len > self.left() {
            return Err(Refusal::Malformed(format!(
                "{what} at byte {at} claims {len} bytes, but only {} remain",
                self.left()
            )));
        }
        let inner = Bounded::new(&self.bytes[self.at..self.at + len], self.base + self.at);
        self.at += len;
        Ok(inner)
    }

    fn skip(&mut self, n: usize, what: &str) -> Result<(), Refusal> {
        if n > self.left() {
            return Err(self.too_short(what));
        }
        self.at += n;
        Ok(())
    }
}

/// Refuses a file whose sections (or the lengths inside a signature section)
/// claim more bytes than the file holds, before `wasmsign2` reads it: it allocates
/// whatever a length says, so 14 bytes could make it ask for 4 GiB.
pub fn check_lengths(bytes: &[u8]) -> Result<(), Refusal> {
    check_preamble(bytes)?;
    let mut file = Bounded::new(bytes, 0);
    file.skip(8, "the preamble")?;
    while file.left() > 0 {
        let id = file.byte("a section id")?;
        let mut section = file.slice("a section")?;
        if id == 0 {
            let name = section.slice("a custom section's name")?;
            if name.bytes == SIGNATURE_SECTION.as_bytes() {
                check_signature_lengths(&section.bytes[section.at..], section.base + section.at)?;
            }
        }
    }
    Ok(())
}

/// The lengths inside a signature section's payload (or a detached signature).
fn check_signature_lengths(payload: &[u8], base: usize) -> Result<(), Refusal> {
    let mut data = Bounded::new(payload, base);
    for what in [
        "the signature version",
        "its content type",
        "its hash function",
    ] {
        data.byte(what)?;
    }
    let sets = data.varint("the count of signed hash sets")?;
    // wasmsign2 refuses counts over its maxima itself; the loops stop there too.
    for _ in 0..sets.min(MAX_HASHES) {
        let mut set = data.slice("a signed hash set")?;
        let hashes = set.varint("the count of hashes")?;
        for _ in 0..hashes.min(MAX_HASHES) {
            set.skip(32, "a hash")?;
        }
        let signatures = set.varint("the count of signatures")?;
        for _ in 0..signatures.min(MAX_SIGNATURES) {
            let mut signature = set.slice("a signature")?;
            signature.slice("a key id")?;
            signature.byte("an algorithm id")?;
            signature.slice("a signature's bytes")?;
        }
    }
    Ok(())
}

fn malformed(e: WSError) -> Refusal {
    Refusal::Malformed(e.to_string())
}

/// Signs a component with `key`, embedding the signature (an existing one is
/// replaced). Returns the signed bytes.
pub fn sign(bytes: &[u8], key: &SigningKey) -> Result<Vec<u8>, String> {
    check_preamble(bytes).map_err(|e| e.to_string())?;
    check_lengths(bytes).map_err(|e| e.to_string())?;
    let module = Module::deserialize(&mut Cursor::new(bytes))
        .map_err(|e| format!("cannot read the component's sections: {e}"))?;
    if module.sections.iter().any(Section::is_signature_delimiter) {
        return Err(
            "the component has `signature_delimiter` sections (partial signing); \
                    this host verifies components whole"
                .into(),
        );
    }
    let signed = key
        .key
        .sign(module, key.public.key.key_id())
        .map_err(|e| format!("cannot sign: {e}"))?;
    let mut out = Vec::with_capacity(bytes.len() + 128);
    signed
        .serialize(&mut out)
        .map_err(|e| format!("cannot write the signed component: {e}"))?;
    Ok(out)
}

/// Signs a component without changing it: the detached signature (the payload the
/// `signature` section would hold).
pub fn sign_detached(bytes: &[u8], key: &SigningKey) -> Result<Vec<u8>, String> {
    check_preamble(bytes).map_err(|e| e.to_string())?;
    check_lengths(bytes).map_err(|e| e.to_string())?;
    let module = Module::deserialize(&mut Cursor::new(bytes))
        .map_err(|e| format!("cannot read the component's sections: {e}"))?;
    if module.sections.iter().any(Section::is_signature_header) {
        return Err("the component already carries an embedded signature".into());
    }
    let (_, signature) = key
        .key
        .sign_multi(module, key.public.key.key_id(), true, false)
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(signature)
}

/// Verifies `bytes` (the exact bytes that will be compiled) against `keys`, with the
/// embedded signature or, when given, a detached one. The first key that verifies wins.
pub fn verify(
    bytes: &[u8],
    detached: Option<&[u8]>,
    keys: &[&VerifyingKey],
) -> Result<Verified, Refusal> {
    check_preamble(bytes)?;
    check_lengths(bytes)?;
    if let Some(signature) = detached {
        check_signature_lengths(signature, 0)?;
    }
    let module = Module::deserialize(&mut Cursor::new(bytes)).map_err(malformed)?;
    if module.sections.iter().any(Section::is_signature_delimiter) {
        return Err(Refusal::Partial);
    }
    let payload = match (detached, module.sections.first()) {
        (Some(signature), _) => {
            if module.sections.iter().any(Section::is_signature_header) {
                return Err(Refusal::Malformed(
                    "both a detached and an embedded signature were given".into(),
                ));
            }
            signature.to_vec()
        }
        (None, Some(Section::Custom(first))) if first.is_signature_header() => {
            first.signature_data().map_err(malformed)?;
            wasmsign2::SectionLike::payload(first).to_vec()
        }
        (None, _) => {
            // A signature section anywhere but first is not a signature of this file.
            return Err(
                if module.sections.iter().any(Section::is_signature_header) {
                    Refusal::Malformed("the signature section is not the first section".into())
                } else {
                    Refusal::NotSigned
                },
            );
        }
    };
    let data = wasmsign2::SignatureData::deserialize(&payload).map_err(malformed)?;
    let seen: Vec<KeyId> = data
        .signed_hashes_set
        .iter()
        .flat_map(|set| &set.signatures)
        .filter_map(|s| s.key_id.as_deref().map(KeyId::from_bytes))
        .collect();
    if data
        .signed_hashes_set
        .iter()
        .all(|set| set.signatures.is_empty())
    {
        return Err(Refusal::Malformed("it holds no signature".into()));
    }

    for (key_index, key) in keys.iter().enumerate() {
        if key.key.verify(&mut Cursor::new(bytes), detached).is_ok() {
            return Ok(Verified {
                key_index,
                key_id: key.id(),
            });
        }
    }
    match keys.iter().find(|k| seen.contains(&k.id())) {
        Some(known) => Err(Refusal::Mismatch(known.id())),
        None => Err(Refusal::Untrusted(dedup(seen))),
    }
}

fn dedup(mut ids: Vec<KeyId>) -> Vec<KeyId> {
    let mut seen = Vec::new();
    ids.retain(|id| {
        let new = !seen.contains(id);
        seen.push(id.clone());
        new
    });
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component() -> &'static [u8] {
        crate::ROTATE_COMPONENT
    }

    #[test]
    fn a_verifier_remembers_each_list_of_keys_apart() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        let signed = sign(component(), &a).unwrap();
        let verifier = Verifier::new(&signed, None);
        for _ in 0..2 {
            assert_eq!(verifier.verify(&[a.public()]).unwrap().key_index, 0);
            assert_eq!(
                verifier.verify(&[b.public()]),
                Err(Refusal::Untrusted(vec![a.id()])),
                "another key is not the remembered one"
            );
            assert_eq!(
                verifier
                    .verify(&[b.public(), a.public()])
                    .unwrap()
                    .key_index,
                1
            );
            assert_eq!(
                verifier
                    .verify(&[a.public(), b.public()])
                    .unwrap()
                    .key_index,
                0
            );
        }
        assert_eq!(verifier.sha256(), crate::digest::sha256_hex(&signed));
    }

    #[test]
    fn wasmsign2_reads_and_signs_component_binaries() {
        // The component preamble (version 0x0d, layer 1) differs from a core
        // module's; wasmsign2 0.2.8 accepts both, and its section walk holds for the
        // component's top-level sections.
        assert_eq!(&component()[..8], &COMPONENT_PREAMBLE);
        let module = Module::deserialize(&mut Cursor::new(component())).unwrap();
        assert_eq!(module.header, COMPONENT_PREAMBLE);
        let mut round = Vec::new();
        module.serialize(&mut round).unwrap();
        assert_eq!(round, component(), "sections re-serialise byte for byte");

        let key = SigningKey::generate();
        let signed = sign(component(), &key).unwrap();
        assert_eq!(&signed[..8], &COMPONENT_PREAMBLE);
        assert_eq!(
            verify(&signed, None, &[key.public()]).unwrap(),
            Verified {
                key_index: 0,
                key_id: key.id()
            }
        );
        // The signed bytes are the original ones behind one custom section.
        assert!(signed.ends_with(&component()[8..]));
    }

    #[test]
    fn unsigned_is_not_signed() {
        let key = SigningKey::generate();
        assert_eq!(
            verify(component(), None, &[key.public()]),
            Err(Refusal::NotSigned)
        );
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let key = SigningKey::generate();
        let signed = sign(component(), &key).unwrap();
        let sig_len = signed.len() - component().len() + 8;
        // The preamble, every byte of the signature section, and a sample of the rest.
        let positions = (0..sig_len + 64).chain((sig_len + 64..signed.len()).step_by(997));
        for i in positions {
            let mut bad = signed.clone();
            bad[i] ^= 0x01;
            let r = verify(&bad, None, &[key.public()]);
            assert!(r.is_err(), "byte {i} flipped still verifies");
        }
    }

    #[test]
    fn an_unknown_key_is_named() {
        let trusted = SigningKey::generate();
        let other = SigningKey::generate();
        let signed = sign(component(), &other).unwrap();
        assert_eq!(
            verify(&signed, None, &[trusted.public()]),
            Err(Refusal::Untrusted(vec![other.id()]))
        );
    }

    #[test]
    fn resigned_by_another_key_is_untrusted() {
        let trusted = SigningKey::generate();
        let other = SigningKey::generate();
        let signed = sign(component(), &trusted).unwrap();
        let resigned = sign(&signed, &other).unwrap();
        assert!(matches!(
            verify(&resigned, None, &[trusted.public()]),
            Err(Refusal::Untrusted(ids)) if ids == vec![other.id()]
        ));
    }

    #[test]
    fn detached_signatures_verify_the_unchanged_file() {
        let key = SigningKey::generate();
        let sig = sign_detached(component(), &key).unwrap();
        assert!(verify(component(), Some(&sig), &[key.public()]).is_ok());
        let mut bad = component().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            verify(&bad, Some(&sig), &[key.public()]),
            Err(Refusal::Mismatch(key.id()))
        );
    }

    #[test]
    fn partial_signatures_are_refused() {
        // wasmsign2's partial signing: delimiter sections, each prefix signed.
        let key = SigningKey::generate();
        let module = Module::deserialize(&mut Cursor::new(component())).unwrap();
        let (signed, _) = key
            .key
            .sign_multi(module, key.public.key.key_id(), false, true)
            .unwrap();
        let mut bytes = Vec::new();
        signed.serialize(&mut bytes).unwrap();
        assert_eq!(verify(&bytes, None, &[key.public()]), Err(Refusal::Partial));
        assert!(
            sign(&bytes, &key)
                .unwrap_err()
                .contains("signature_delimiter")
        );
    }

    #[test]
    fn a_signature_section_that_is_not_first_is_malformed() {
        let key = SigningKey::generate();
        let signed = sign(component(), &key).unwrap();
        let mut module = Module::deserialize(&mut Cursor::new(&signed[..])).unwrap();
        let header = module.sections.remove(0);
        module.sections.push(header);
        let mut moved = Vec::new();
        module.serialize(&mut moved).unwrap();
        assert!(matches!(
            verify(&moved, None, &[key.public()]),
            Err(Refusal::Malformed(_))
        ));
    }

    /// 14 bytes: the preamble, then a section claiming 4 GiB. wasmsign2 would
    /// allocate the claimed length before reading it; the pre-check refuses first.
    pub(crate) const HUGE_SECTION: [u8; 14] = [
        0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f,
    ];

    #[test]
    fn lengths_past_the_end_are_refused_before_wasmsign2_reads_them() {
        let r = check_lengths(&HUGE_SECTION).unwrap_err();
        assert!(r.is_refusal());
        assert!(
            r.to_string()
                .contains("claims 4294967295 bytes, but only 0 remain"),
            "{r}"
        );
        assert_eq!(verify(&HUGE_SECTION, None, &[]), Err(r));
        let key = SigningKey::generate();
        assert!(sign(&HUGE_SECTION, &key).unwrap_err().contains("claims"));

        // Inside a section that fits: a custom section's name claiming more than
        // the section, and a signature whose inner lengths claim gigabytes.
        assert!(!check_lengths(b"not wasm").unwrap_err().is_refusal());
        let mut name = COMPONENT_PREAMBLE.to_vec();
        name.extend([0x00, 0x03, 0xff, 0xff, 0x0f]);
        assert!(
            check_lengths(&name)
                .unwrap_err()
                .to_string()
                .contains("name")
        );
        let mut sig = COMPONENT_PREAMBLE.to_vec();
        let payload = [
            &[9u8][..],
            b"signature",
            &[0x01, 0x01, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ]
        .concat();
        sig.push(0x00);
        sig.push(payload.len() as u8);
        sig.extend(&payload);
        assert!(
            check_lengths(&sig)
                .unwrap_err()
                .to_string()
                .contains("a signed hash set"),
        );
        assert!(check_signature_lengths(&[0x01, 0x01, 0x00, 0x01, 0xff, 0xff, 0x0f], 0).is_err());

        // Every real component, signed or not, passes.
        check_lengths(component()).unwrap();
        check_lengths(&sign(component(), &key).unwrap()).unwrap();
        let detached = sign_detached(component(), &key).unwrap();
        check_signature_lengths(&detached, 0).unwrap();
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        let module = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        let r = verify(&module, None, &[]).unwrap_err();
        assert!(!r.is_refusal());
        assert!(r.to_string().contains("core module"));
    }
}
