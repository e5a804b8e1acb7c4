//! `netstat`: TCP connections by state and UDP sockets (the agent's figures, without walking
//! every process's file descriptors). Counted through the kernel's socket diagnostics
//! (netlink `SOCK_DIAG_BY_FAMILY`, what `ss` uses): on a machine with a large connection hash
//! table, reading /proc/net/tcp costs milliseconds even with no connections. Where netlink is
//! not allowed, or under a host root other than `/`, from /proc/net/{tcp,tcp6,udp,udp6}.

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "netstat",
    prefix: "netstat",
    fields: &[
        field("tcp_close", Unit::Count, Kind::Gauge),
        field("tcp_close_wait", Unit::Count, Kind::Gauge),
        field("tcp_closing", Unit::Count, Kind::Gauge),
        field("tcp_established", Unit::Count, Kind::Gauge),
        field("tcp_fin_wait1", Unit::Count, Kind::Gauge),
        field("tcp_fin_wait2", Unit::Count, Kind::Gauge),
        field("tcp_last_ack", Unit::Count, Kind::Gauge),
        field("tcp_listen", Unit::Count, Kind::Gauge),
        field("tcp_none", Unit::Count, Kind::Gauge),
        field("tcp_syn_sent", Unit::Count, Kind::Gauge),
        field("tcp_syn_recv", Unit::Count, Kind::Gauge),
        field("tcp_time_wait", Unit::Count, Kind::Gauge),
        field("udp_socket", Unit::Count, Kind::Gauge),
    ],
    not_collected: &[],
    options: &[],
    dimensions: "",
    supported: cfg!(target_os = "linux"),
    macos: &[],
    new: |c| Box::new(Netstat(c.clone())),
};

/// The kernel's TCP states (include/net/tcp_states.h), by number.
const STATES: [&str; 12] = [
    "tcp_none",
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
];

/// Connections per state in /proc/net/tcp text (index as in [`STATES`]).
pub fn count_tcp(text: &str, counts: &mut [u64; 12]) {
    for line in text.lines().skip(1) {
        let state = line
            .split_whitespace()
            .nth(3)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .filter(|&s| s < STATES.len())
            .unwrap_or(0);
        counts[state] += 1;
    }
}

/// Sockets of `protocol` (IPPROTO_TCP or IPPROTO_UDP) over IPv4 and IPv6, counted by state,
/// from the kernel's socket diagnostics. None if netlink cannot be used here.
#[cfg(target_os = "linux")]
fn sock_diag(protocol: u8) -> Option<[u64; 12]> {
    use std::mem::size_of;

    /// `struct inet_diag_req_v2` with its `inet_diag_sockid` (linux/inet_diag.h).
    #[repr(C)]
    struct Request {
        header: libc::nlmsghdr,
        family: u8,
        protocol: u8,
        ext: u8,
        pad: u8,
        states: u32,
        sockid: [u8; 48],
    }
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    /// Bytes of `struct inet_diag_msg` before the state: the family.
    const STATE_AT: usize = 1;

    // SAFETY: plain system calls on a socket this function owns and closes; buffers are sized
    // and every length the kernel gives is checked before reading.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return None;
        }
        let close = |r| {
            libc::close(fd);
            r
        };
        let mut tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw mut tv).cast(),
            size_of::<libc::timeval>() as u32,
        );
        let mut counts = [0u64; 12];
        for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
            let req = Request {
                header: libc::nlmsghdr {
                    nlmsg_len: size_of::<Request>() as u32,
                    nlmsg_type: SOCK_DIAG_BY_FAMILY,
                    nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
                    nlmsg_seq: seq,
                    nlmsg_pid: 0,
                },
                family,
                protocol,
                ext: 0,
                pad: 0,
                states: u32::MAX,
                sockid: [0; 48],
            };
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            let sent = libc::sendto(
                fd,
                (&raw const req).cast(),
                size_of::<Request>(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            );
            if sent < 0 {
                return close(None);
            }
            let mut buf = vec![0u8; 64 * 1024];
            'dump: loop {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                if n <= 0 {
                    return close(None);
                }
                let mut at = 0usize;
                let n = n as usize;
                while at + size_of::<libc::nlmsghdr>() <= n {
                    let h: libc::nlmsghdr = std::ptr::read_unaligned(buf[at..].as_ptr().cast());
                    let len = h.nlmsg_len as usize;
                    if len < size_of::<libc::nlmsghdr>() || at + len > n {
                        return close(None);
                    }
                    match h.nlmsg_type as i32 {
                        libc::NLMSG_DONE => break 'dump,
                        libc::NLMSG_ERROR => {
                            // IPv6 may be off: nothing to count there.
                            if family == libc::AF_INET6 as u8 {
                                break 'dump;
                            }
                            return close(None);
                        }
                        _ => {
                            let state_at = at + size_of::<libc::nlmsghdr>() + STATE_AT;
                            if state_at < at + len {
                                let state = buf[state_at] as usize;
                                counts[if state < counts.len() { state } else { 0 }] += 1;
                            }
                        }
                    }
                    at += (len + 3) & !3;
                }
            }
        }
        close(Some(counts))
    }
}

#[cfg(not(target_os = "linux"))]
fn sock_diag(_protocol: u8) -> Option<[u64; 12]> {
    None
}

pub struct Netstat(SectionConfig);

impl Collector for Netstat {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        if host.root == std::path::Path::new("/") {
            if let (Some(tcp), Some(udp)) = (
                sock_diag(libc::IPPROTO_TCP as u8),
                sock_diag(libc::IPPROTO_UDP as u8),
            ) {
                let mut s = Series::new(Vec::new());
                for (i, name) in STATES.iter().enumerate() {
                    s.put(&self.0, name, tcp[i] as f64);
                }
                s.put(&self.0, "udp_socket", udp.iter().sum::<u64>() as f64);
                out.push(s);
                return;
            }
        }
        let mut tcp = [0u64; 12];
        let mut udp = 0u64;
        let mut any = false;
        for file in ["net/tcp", "net/tcp6"] {
            // IPv6 may be off; only a missing /proc/net/tcp is worth a warning.
            let text = if file == "net/tcp" {
                host.read_proc("netstat", file)
            } else {
                std::fs::read_to_string(host.proc.join(file)).ok()
            };
            if let Some(t) = text {
                any = true;
                count_tcp(&t, &mut tcp);
            }
        }
        for file in ["net/udp", "net/udp6"] {
            if let Ok(t) = std::fs::read_to_string(host.proc.join(file)) {
                udp += t.lines().skip(1).filter(|l| !l.trim().is_empty()).count() as u64;
            }
        }
        if !any {
            return;
        }
        let mut s = Series::new(Vec::new());
        for (i, name) in STATES.iter().enumerate() {
            s.put(&self.0, name, tcp[i] as f64);
        }
        s.put(&self.0, "udp_socket", udp as f64);
        out.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_diagnostics_count_what_proc_shows() {
        // A listening socket of this test's own, seen both ways.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let Some(diag) = sock_diag(libc::IPPROTO_TCP as u8) else {
            panic!("netlink socket diagnostics are not available here");
        };
        let mut proc = [0u64; 12];
        for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(t) = std::fs::read_to_string(f) {
                count_tcp(&t, &mut proc);
            }
        }
        // Other tests open and close connections meanwhile; listeners are steadier.
        assert!(diag[10] >= 1 && proc[10] >= 1, "{diag:?} {proc:?}");
        let udp_count: u64 = sock_diag(libc::IPPROTO_UDP as u8).unwrap().iter().sum();
        assert!(udp_count >= 1);
        drop((listener, udp));
    }
}
