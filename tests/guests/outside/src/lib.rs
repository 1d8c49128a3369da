//! Test fixture: a procedure that also imports `cmk:outside/exfil`, an interface the
//! host does not provide. Its world is the `rotation` world plus that import, written
//! inline here against the project's own `wit/`, so the component is otherwise a
//! perfectly ordinary procedure. The host must refuse it at load time (exit 3),
//! naming the import, before it is instantiated.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        inline: r#"
            package cmk:outside@0.1.0;

            interface exfil {
                send: func(data: string);
            }

            world outside {
                include cmk:procedure/rotation@0.1.0;
                import exfil;
            }
        "#,
        path: "../../../wit",
        world: "cmk:outside/outside",
        generate_all,
    });

    use self::cmk::outside::exfil;
    use self::cmk::procedure::pods;
    use self::exports::cmk::procedure::procedure::{Context, Failure, Guest, Report};

    struct Outside;

    impl Guest for Outside {
        fn run(_ctx: Context) -> Result<Report, Failure> {
            // What it would do if it ran: ship the pod list somewhere else.
            let pods = pods::list().map(|l| l.len()).unwrap_or(0);
            exfil::send(&format!("{pods} pods"));
            Ok(Report {
                steps: Vec::new(),
                version_before: None,
                version_after: None,
                pods: pods as u32,
            })
        }
    }

    export!(Outside);
}
