//! The PNG chart next to the report: throughput (HTTP/1.1 and HTTP/2) and p99 latency per
//! configuration, drawn by gnuplot (`pngcairo`, else the plain `png` terminal).

use std::{fmt::Write as _, path::Path, process::Command, time::Duration};

use anyhow::{Context, Result, bail};

use super::{procs, results::Row};

/// Writes `png` from the rows' medians.
pub fn draw(rows: &[Row], rate: u32, png: &Path) -> Result<()> {
    let gnuplot = procs::find_program("gnuplot").context("gnuplot is not installed")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("bench.dat");
    std::fs::write(&data, data_file(rows))?;
    let mut last_err = String::new();
    for terminal in ["pngcairo size 1600,560 font 'sans,10'", "png size 1600,560"] {
        let script = dir.path().join("bench.gp");
        std::fs::write(&script, script_text(terminal, &data, png, rate))?;
        let out = procs::run_bounded(Command::new(&gnuplot).arg(&script), Duration::from_secs(60))?;
        if out.status.success() && png.exists() {
            return Ok(());
        }
        last_err = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    bail!("gnuplot failed: {last_err}")
}

/// One line per configuration: name, HTTP/1.1 req/s, HTTP/2 req/s, p99 in µs (`?` if missing).
fn data_file(rows: &[Row]) -> String {
    let mut s = String::from("# configuration h1_rps h2_rps p99_us\n");
    let v = |x: Option<f64>| x.map_or_else(|| "?".to_owned(), |x| format!("{x:.1}"));
    for r in rows {
        let _ =
            writeln!(s, "\"{}\" {} {} {}", r.label(), v(r.h1_rps()), v(r.h2_rps()), v(r.lat_us(|l| l.p99)));
    }
    s
}

fn script_text(terminal: &str, data: &Path, png: &Path, rate: u32) -> String {
    format!(
        r#"set terminal {terminal}
set output '{png}'
set datafile missing '?'
set multiplot layout 1,2 title "Pillion vs nginx, haproxy and Envoy (loopback, proxy pinned to 1 core; pod: upstream on the proxy core)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set xtics rotate by -25 nomirror
set key top right
set title "Throughput (higher is better)"
set ylabel "requests/s"
plot '{data}' using 2:xtic(1) title 'HTTP/1.1 (wrk -c50)', '' using 3 title 'HTTP/2 (h2load -c10 -m10)'
set title "p99 latency at {rate} req/s (lower is better)"
set ylabel "microseconds"
plot '{data}' using 4:xtic(1) title 'p99' linecolor rgb '#c0504d'
unset multiplot
"#,
        png = png.display(),
        data = data.display(),
    )
}
