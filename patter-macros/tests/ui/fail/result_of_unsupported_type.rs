struct Report {
    total: u32,
}

/// Builds the daily report.
#[patter::tool]
async fn daily_report() -> Result<Report, String> {
    Ok(Report { total: 3 })
}

fn main() {}
