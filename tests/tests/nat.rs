//! Phones behind NAT, on loopback: a phone whose Contact names a private address is
//! reached through the address its REGISTER came from, responses carry Via received and
//! rport, CRLF keepalives are taken quietly, and coturn's STUN client learns its reflexive
//! address from the node's SIP port. (The same in network namespaces with a real NAT is
//! still to come.)

use anyhow::{ensure, Context, Result};
use p2psip_tests::requests::{invite, next_request};
use p2psip_tests::{run_bounded, Node, NodeConfig, Request, UdpClient, DOMAIN};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

const REPLY_LIMIT: Duration = Duration::from_secs(5);
/// The address the phone believes it has, behind its NAT.
const PRIVATE_CONTACT: &str = "192.168.1.5:5060";

#[test]
fn a_phone_behind_nat_registers_and_is_called_at_its_public_address() -> Result<()> {
    let node = Node::start(&NodeConfig::open())?;
    // The NAT's public side: the address the node sees the phone's packets come from.
    let phone = UdpClient::bind(Ipv4Addr::new(127, 0, 0, 50), node.udp_addr())?;
    let caller = UdpClient::bind(Ipv4Addr::new(127, 0, 0, 51), node.udp_addr())?;
    let result = (|| -> Result<()> {
        let register = Request::new("REGISTER", &format!("sip:{DOMAIN}"), &phone)
            .set(
                "Via",
                &format!("SIP/2.0/UDP {PRIVATE_CONTACT};branch=z9hG4bKnat-reg-1;rport"),
            )
            .set("From", &format!("<sip:bob@{DOMAIN}>;tag=r1"))
            .set("To", &format!("<sip:bob@{DOMAIN}>"))
            .set("CSeq", "1 REGISTER")
            .with("Contact", &format!("<sip:bob@{PRIVATE_CONTACT}>"))
            .with("Expires", "600");
        let ok = phone.expect_response(&register, REPLY_LIMIT)?;
        ensure!(ok.status == 200, "REGISTER:\n{}", ok.raw);
        let via = ok.header("Via").context("no Via in the 200")?;
        let expected = format!(";received=127.0.0.50;rport={}", phone.local_addr().port());
        ensure!(via.ends_with(&expected), "Via without {expected}: {via}");

        // A keepalive is not a message: no answer, no harm.
        phone.send(b"\r\n\r\n")?;

        let uri = format!("sip:bob@{DOMAIN}");
        caller.send(&invite(&caller, &uri, "sip:alice@elsewhere.example").to_bytes())?;
        let delivered = next_request(&phone, REPLY_LIMIT)?
            .context("the call did not reach the phone through its NAT mapping")?;
        ensure!(
            delivered.starts_with(&format!("INVITE sip:bob@{PRIVATE_CONTACT} SIP/2.0")),
            "{delivered}"
        );
        Ok(())
    })();
    node.context(result)
}

/// coturn's `turnutils_stunclient` against the node's SIP UDP port: the reflexive address
/// it reports is its own.
#[test]
fn coturn_s_stun_client_learns_its_address_from_the_sip_port() -> Result<()> {
    if Command::new("turnutils_stunclient")
        .arg("-h")
        .output()
        .is_err()
    {
        eprintln!("skipped: turnutils_stunclient not installed (Debian package coturn)");
        return Ok(());
    }
    let node = Node::start(&NodeConfig::open())?;
    let mut command = Command::new("turnutils_stunclient");
    command
        .arg("-p")
        .arg(node.udp_addr().port().to_string())
        .arg("-L")
        .arg("127.0.0.1")
        .arg("127.0.0.1");
    let out = run_bounded(command, Duration::from_secs(20))?;
    let expected = "UDP reflexive addr: 127.0.0.1:";
    node.context((|| {
        ensure!(
            out.stdout.contains(expected) || out.stderr.contains(expected),
            "no reflexive address in the client's output:\n{out:?}"
        );
        Ok(())
    })())
}
