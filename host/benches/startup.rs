//! Start-up cost of a run, before the procedure's first instruction: cold (verify
//! the signature, compile with Cranelift) against cached (verify, load the compiled
//! component from the precompile cache).
//!
//! A bench binary (`harness = false`): each case runs a fixed number of times after
//! one warm-up, and the minimum, median and mean are printed.
//!
//!     cargo bench -p cmk-host --bench startup
//!
//! The component is the bundled rotation, signed with a fresh key.

use std::time::{Duration, Instant};

use cmk_host::cache::{self, Cache, CacheStatus};
use cmk_host::runtime::Runtime;
use cmk_host::trust::keys::SigningKey;
use cmk_host::trust::verify;

fn measure(name: &str, iterations: usize, mut f: impl FnMut()) {
    f(); // warm-up: page in code, fill allocator pools
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / iterations as u32;
    println!(
        "{name:<38} n={iterations:<3} min {:>9.3} ms   median {:>9.3} ms   mean {:>9.3} ms",
        ms(times[0]),
        ms(times[iterations / 2]),
        ms(mean)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing else
    // useful. Either way, run everything.
    let key = SigningKey::generate();
    let signed = verify::sign(cmk_host::ROTATE_COMPONENT, &key).expect("sign");
    let keys = [key.public()];
    let runtime = Runtime::new().expect("wasmtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = Cache::open(&dir.path().join("cmk-host")).expect("cache");
    println!(
        "component: {} bytes (signed), {} cores available",
        signed.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    measure("verify (signature only)", 200, || {
        verify::verify(&signed, None, &keys).expect("verified");
    });
    measure("cold: verify + compile (--no-cache)", 10, || {
        verify::verify(&signed, None, &keys).expect("verified");
        let (_, status) = cache::load_uncached(&runtime, &signed).expect("compile");
        assert_eq!(status, CacheStatus::Off);
    });
    measure("cold: verify + compile + store", 10, || {
        let entry = cache.entry(runtime.engine(), &sha256(&signed));
        let _ = std::fs::remove_file(entry);
        verify::verify(&signed, None, &keys).expect("verified");
        let (_, status) = cache.load(&runtime, &signed).expect("compile");
        assert_eq!(status, CacheStatus::Stored);
    });
    measure("cached: verify + load", 50, || {
        verify::verify(&signed, None, &keys).expect("verified");
        let (_, status) = cache.load(&runtime, &signed).expect("load");
        assert_eq!(status, CacheStatus::Hit);
    });
}

fn sha256(bytes: &[u8]) -> String {
    cmk_host::digest::sha256_hex(bytes)
}
