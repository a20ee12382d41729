//! `wharf dev-certs DIR`: certificates to try TLS and mutual TLS with no
//! other tools. The library makes them ([`wharf::tls::write_dev_certs`]);
//! this prints where they went and the two commands that use them, since
//! someone running it is about to type those next.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::DevCertsArgs;

/// Writes the five files and prints how to use them.
pub fn run(args: DevCertsArgs) -> anyhow::Result<ExitCode> {
    let names = if args.names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        args.names
    };
    let written = wharf::tls::write_dev_certs(&args.dir, &names).with_context(|| {
        format!(
            "cannot write development certificates into {}",
            args.dir.display()
        )
    })?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    let dir = args.dir.display();
    let name = &names[0];
    println!();
    println!("A development CA signed these; trust it nowhere else. Try TLS with:");
    println!("  wharf serve --tls-bind 127.0.0.1:7879 --tls-cert {dir}/server.pem --tls-key {dir}/server.key");
    println!("  wharf client --connect {name}:7879 --tls --tls-ca {dir}/ca.pem --ping");
    println!("and mutual TLS by adding --tls-client-ca {dir}/ca.pem to serve and");
    println!("--tls-cert {dir}/client.pem --tls-key {dir}/client.key to client.");
    Ok(ExitCode::SUCCESS)
}
