//! The manual page the Debian package ships, `debian/amazon-cloudwatch-publisher.1`, is generated
//! from the command-line definition. This test regenerates it and fails when the committed page
//! differs; `UPDATE_MANPAGE=1 cargo test --test manpage` writes it anew.

use std::path::Path;

use amazon_cloudwatch_publisher::cli::Args;
use clap::CommandFactory;
use roff::{bold, italic, roman, Roff};

fn section(page: &mut Roff, title: &str) {
    page.control("SH", [title]);
}

/// A tagged paragraph: `term` in bold, then its description.
fn item(page: &mut Roff, term: &str, text: &str) {
    page.control("TP", [])
        .text([bold(term)])
        .text([roman(text)]);
}

fn render() -> String {
    let cmd = Args::command();
    let man = clap_mangen::Man::new(cmd)
        .manual("System Administration")
        .section("1");
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();

    // The subcommands have no pages of their own, so they are described here rather than
    // pointed to.
    let mut page = Roff::new();
    section(&mut page, "COMMANDS");
    for sub in Args::command().get_subcommands() {
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string());
        let usage = sub.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").trim();
        item(&mut page, usage, &about.unwrap_or_default());
        for arg in sub.get_arguments().filter(|a| a.get_long().is_some()) {
            if arg.get_id() == "help" {
                continue;
            }
            let mut term = format!("    --{}", arg.get_long().unwrap_or_default());
            if let Some(names) = arg
                .get_value_names()
                .filter(|_| arg.get_action().takes_values())
            {
                term.push_str(&format!(" <{}>", names.join(" ")));
            }
            let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if let Some(d) = arg.get_default_values().first() {
                help.push_str(&format!(" [default: {}]", d.to_string_lossy()));
            }
            item(&mut page, &term, &help);
        }
    }
    section(&mut page, "FILES");
    item(
        &mut page,
        "/opt/aws/amazon-cloudwatch-publisher/etc/amazon-cloudwatch-publisher.json",
        "The config file read when no CONFIG is given. It may hold the device's password: \
         keep it mode 0600, owned by the service user.",
    );
    item(
        &mut page,
        "/opt/aws/amazon-cloudwatch-publisher/logs/",
        "The publisher's own log, rotated by size.",
    );
    item(
        &mut page,
        "/opt/aws/amazon-cloudwatch-publisher/state/",
        "Metrics not yet accepted by CloudWatch (metrics-spool/) and the position reached in \
         each log file and in the journal (logs-state.json), so nothing is lost or sent twice \
         across restarts.",
    );
    section(&mut page, "EXIT STATUS");
    for (code, text) in [
        (
            "0",
            "Stopped by SIGTERM or SIGINT, or --once published everything.",
        ),
        ("64", "The command line is wrong."),
        (
            "65",
            "provision: systems.txt or the outputs file is wrong (each problem is named by line or key).",
        ),
        (
            "69",
            "provision: Cognito refused or could not be reached; the users made so far are listed.",
        ),
        (
            "70",
            "The host's metrics cannot be read, or the process cannot start its runtime.",
        ),
        (
            "73",
            "The spool, the state or the log directory cannot be written.",
        ),
        (
            "75",
            "--once: CloudWatch did not accept everything; it stays in the spool for the next run.",
        ),
        (
            "78",
            "The config is wrong: every problem is printed with the file and key it concerns. \
             The systemd unit does not restart the service for this status.",
        ),
    ] {
        item(&mut page, code, text);
    }
    section(&mut page, "SIGNALS");
    item(
        &mut page,
        "SIGTERM, SIGINT",
        "Send what was read, save positions, and exit 0.",
    );
    item(&mut page, "SIGHUP", "Logged and otherwise ignored.");
    section(&mut page, "SEE ALSO");
    page.text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), "),
        bold("dpkg-reconfigure"),
        roman("(8); the README in "),
        italic("/usr/share/doc/amazon-cloudwatch-publisher/"),
        roman("."),
    ]);
    page.to_writer(&mut out).unwrap();
    man.render_version_section(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_shipped_manual_page_matches_the_command_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/amazon-cloudwatch-publisher.1");
    let fresh = render();
    if std::env::var_os("UPDATE_MANPAGE").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is out of date with the command line; regenerate it with \
         UPDATE_MANPAGE=1 cargo test --test manpage",
        path.display()
    );
}
