//! Aligned text columns for the CLI's human output.
//!
//! Invariant: every row has as many cells as the header (short rows are
//! padded with empty cells), so columns never shift.

/// A table: a header row and data rows.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len().max(cells.len()), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, columns two spaces apart.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let line: Vec<String> = r
                .iter()
                .take(n)
                .enumerate()
                .map(|(i, c)| {
                    if i + 1 == n {
                        c.clone()
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_short_rows_pad() {
        let mut t = Table::new(&["NAME", "SIZE", "STATE"]);
        t.row(vec!["db".into(), "1.0 GiB".into(), "active".into()]);
        t.row(vec!["logs-long".into()]);
        assert_eq!(
            t.render(),
            "NAME       SIZE     STATE\ndb         1.0 GiB  active\nlogs-long\n"
        );
    }
}
