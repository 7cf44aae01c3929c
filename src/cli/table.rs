//! Tables as the terminal can hold them: comfy-table's dynamic arrangement, as wide as the
//! terminal (or `COLUMNS`, which shells export and tests set), wrapping cells instead of breaking
//! lines.

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

/// The narrowest table recast draws: narrower terminals wrap its lines.
const MIN_WIDTH: u16 = 40;

pub fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if let Some(width) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
    {
        table.set_width(width.max(MIN_WIDTH));
    }
    table
}
