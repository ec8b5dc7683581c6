//! The `rtpark` command: runs the engine (default) or talks to a running one.

use clap::{Args, Parser, Subcommand};
use rtpark::config::{Config, Overrides, DEFAULT_NATIVE_SOCKET};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// rtpark: RTP relay, music on hold and call park for SIP cores.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine (the default when no subcommand is given).
    Run(RunArgs),
    /// Send a command to a running engine over its native control socket.
    #[command(disable_help_flag = true)]
    Ctl {
        /// The native control socket.
        #[arg(long, default_value = DEFAULT_NATIVE_SOCKET)]
        socket: PathBuf,
        /// `<cmd> [key=value ...]`, `--raw '<json>'`, or `--help` for the list.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the effective configuration and exit (checks a config file).
    CheckConfig(RunArgs),
    /// Media library tools: list classes and announcements, pre-fill the cache.
    Media {
        /// `list` or `encode`.
        #[command(subcommand)]
        action: MediaAction,
    },
}

#[derive(Subcommand)]
enum MediaAction {
    /// Show classes, files, durations and the encodings already cached.
    List(RunArgs),
    /// Encode every class and announcement in every codec and packet time into the cache.
    Encode(RunArgs),
}

#[derive(Args, Default, Clone)]
struct RunArgs {
    /// TOML configuration file (every key optional; see README).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Media address, optionally with the address to advertise: IP[!ADVERTISED_IP].
    #[arg(long, value_name = "IP[!ADV]")]
    interface: Option<String>,
    /// Lowest RTP port.
    #[arg(long, value_name = "N")]
    port_min: Option<u32>,
    /// Highest RTP/RTCP port.
    #[arg(long, value_name = "N")]
    port_max: Option<u32>,
    /// Worker threads (0 = one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Free port pairs kept bound between calls (default: the whole range; 0 = none).
    #[arg(long, value_name = "N")]
    warm_ports: Option<usize>,
    /// Native control socket: unix:PATH.
    #[arg(long, value_name = "unix:PATH")]
    listen_native: Option<String>,
    /// rtpproxy-protocol socket (Kamailio/OpenSIPS rtpproxy module); repeatable.
    #[arg(long, value_name = "unix:PATH|cunix:PATH|udp:IP:PORT")]
    listen_rtpproxy: Vec<String>,
    /// rtpengine ng-protocol socket (Kamailio/OpenSIPS rtpengine module); repeatable.
    #[arg(long, value_name = "udp:IP:PORT|unix:PATH")]
    listen_ng: Vec<String>,
    /// Packet backend: auto, io_uring or epoll.
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

impl RunArgs {
    fn overrides(self) -> Overrides {
        Overrides {
            config: self.config,
            interface: self.interface,
            port_min: self.port_min,
            port_max: self.port_max,
            workers: self.workers,
            warm_ports: self.warm_ports,
            listen_native: self.listen_native,
            listen_rtpproxy: self.listen_rtpproxy,
            listen_ng: self.listen_ng,
            backend: self.backend,
            log_level: self.log_level,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Ctl { socket, args }) => rtpark::io::ctl::run(&socket, &args),
        Some(Cmd::CheckConfig(args)) => match Config::load(&args.overrides()) {
            Ok(c) => {
                println!("{c:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rtpark: {e}");
                ExitCode::from(2)
            }
        },
        Some(Cmd::Run(args)) => run(args),
        Some(Cmd::Media { action }) => media(action),
        None => run(cli.run),
    }
}

fn media(action: MediaAction) -> ExitCode {
    let (args, encode) = match action {
        MediaAction::List(a) => (a, false),
        MediaAction::Encode(a) => (a, true),
    };
    let config = match Config::load(&args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtpark: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    let library = rtpark::media::library::Library::load(&config.media);
    if encode {
        let started = std::time::Instant::now();
        match library.encode_all() {
            Ok(n) => println!(
                "{n} encodings ready in {:.1} s (cache: {})",
                started.elapsed().as_secs_f64(),
                config
                    .media
                    .cache_dir
                    .as_ref()
                    .map_or("disabled".into(), |d| d.display().to_string())
            ),
            Err(e) => {
                eprintln!("rtpark: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // A closed pipe (e.g. `| head`) ends the listing quietly.
    let mut out = std::io::stdout().lock();
    for item in library.list() {
        let _ = writeln!(
            out,
            "{:<12} {:<16} {:>7.1} s  {}",
            item.kind,
            item.name,
            item.duration_secs,
            if item.encoded.is_empty() {
                "not encoded yet".to_owned()
            } else {
                item.encoded.join(" ")
            }
        );
        for f in &item.files {
            let _ = writeln!(out, "{:<12} {:<16}            {f}", "", "");
        }
    }
    ExitCode::SUCCESS
}

/// Logs to stderr at `level`; the audio decoder's own messages are silenced
/// because rtpark reports every media problem itself, naming the file.
fn init_logging(level: &str) {
    env_logger::Builder::new()
        .parse_filters(level)
        .filter_module("symphonia", log::LevelFilter::Off)
        .format_target(false)
        .init();
}

fn run(args: RunArgs) -> ExitCode {
    let config = match Config::load(&args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtpark: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    log::info!("rtpark {} starting", env!("CARGO_PKG_VERSION"));
    match rtpark::io::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
