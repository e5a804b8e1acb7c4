//! Where a receiver listens: the agent's `service_address`, `[udp://|tcp://][host]:port`.
//!
//! The agent listens on every interface when the host is left out (`":8125"`); the publisher
//! listens on the loopback interface then, so that a device's metrics port is not open to its
//! network by accident. Any other address must be spelled out, and one that reaches beyond the
//! machine gets a warning.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::check::{Checker, Section};

/// How datagrams or documents arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// One socket to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listen {
    pub transport: Transport,
    pub address: SocketAddr,
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.transport.name(), self.address)
    }
}

/// Parses `text`; `None` for the transport when it names no scheme.
pub fn parse(text: &str) -> Result<(Option<Transport>, SocketAddr), String> {
    let (transport, rest) = match text.split_once("://") {
        Some(("udp", rest)) => (Some(Transport::Udp), rest),
        Some(("tcp", rest)) => (Some(Transport::Tcp), rest),
        Some((scheme, _)) => return Err(format!("the scheme {scheme:?} is not udp or tcp")),
        None => (None, text),
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err("has no port: write \"host:port\", or \":port\" for this machine".into());
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("{port:?} is not a port number (1 to 65535)")),
    };
    let ip = match host {
        "" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => {
            let h = h
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h);
            h.parse::<IpAddr>().map_err(|_| {
                format!(
                    "{host:?} is not an IP address (names other than localhost are not looked up)"
                )
            })?
        }
    };
    Ok((transport, SocketAddr::new(ip, port)))
}

/// Checks `service_address` in `s`: the sockets to listen on, `default` when it is absent.
/// With no scheme, each of `transports` is listened on.
pub(super) fn check(
    c: &mut Checker,
    s: &Section,
    default: &str,
    transports: &[Transport],
) -> Vec<Listen> {
    let text = c
        .string(s, "service_address")
        .unwrap_or_else(|| default.to_owned());
    match parse(&text) {
        Ok((transport, address)) => {
            if !address.ip().is_loopback() {
                c.warning(
                    &s.at("service_address"),
                    format!("listens beyond this machine ({address}): anyone who reaches it can send data that is published as this device's"),
                );
            }
            let transports = transport.map_or(transports.to_vec(), |t| vec![t]);
            transports
                .into_iter()
                .map(|transport| Listen { transport, address })
                .collect()
        }
        Err(e) => {
            c.problem(
                &s.at("service_address"),
                format!("{text:?} is not an address to listen on: {e}"),
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_host_is_this_machines_loopback() {
        let (t, a) = parse(":8125").unwrap();
        assert_eq!((t, a.to_string()), (None, "127.0.0.1:8125".into()));
        let (t, a) = parse("tcp://:25888").unwrap();
        assert_eq!(
            (t, a.to_string()),
            (Some(Transport::Tcp), "127.0.0.1:25888".into())
        );
        let (_, a) = parse("0.0.0.0:8125").unwrap();
        assert!(a.ip().is_unspecified());
        let (_, a) = parse("udp://[::1]:8125").unwrap();
        assert_eq!(a.to_string(), "[::1]:8125");
    }

    #[test]
    fn a_bad_address_says_why() {
        assert!(parse("8125").unwrap_err().contains("no port"));
        assert!(parse(":99999").unwrap_err().contains("not a port"));
        assert!(parse("http://:80").unwrap_err().contains("scheme"));
        assert!(parse("example.com:8125").unwrap_err().contains("not an IP"));
    }
}
