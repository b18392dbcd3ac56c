//! Serves an X display without the coop CLI, for manual tests:
//! `serve DISPLAY PORT [TLS_PORT CERT KEY]` (no password).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 3 && a.len() != 6 {
        eprintln!("usage: serve DISPLAY PORT [TLS_PORT CERT KEY]");
        std::process::exit(2);
    }
    let src = coop_display::X11Source::connect(&a[1])?;
    let config = spice_server::Config {
        port: Some(a[2].parse()?),
        tls: (a.len() == 6)
            .then(|| -> Result<_, std::num::ParseIntError> {
                Ok(spice_server::TlsConfig {
                    port: a[3].parse()?,
                    cert: a[4].clone().into(),
                    key: a[5].clone().into(),
                })
            })
            .transpose()?,
        ticketing: spice_server::Ticketing::Disabled,
        ..Default::default()
    };
    spice_server::serve_blocking(config, Box::new(src))?;
    Ok(())
}
