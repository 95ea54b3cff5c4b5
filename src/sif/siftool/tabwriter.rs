//! Go's `text/tabwriter`, as siftool configures it (`minwidth` 0, `tabwidth` 0, space
//! padding, no flags), so that `header` and `info` align byte for byte even when a
//! name or launch script holds tabs, newlines, form feeds or invalid UTF-8.
//!
//! The algorithm is Go's (elastic tabstops): text is split into cells at `\t` and `\v`,
//! lines at `\n` and `\f`; tab-terminated cells in consecutive lines form a column as
//! wide as its widest cell plus the padding; the last cell of a line is never part of
//! a column. Widths count UTF-8 runes the way Go's `utf8.RuneCount` does (each invalid
//! byte is one rune). Text between two `0xff` bytes is passed through uninterpreted.

const ESCAPE: u8 = 0xff;

#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    /// Bytes of text.
    size: usize,
    /// Width in runes (may be negative for an unterminated escape, as in Go).
    width: isize,
}

/// A tab writer collecting its output in memory.
#[derive(Debug)]
pub struct TabWriter {
    out: Vec<u8>,
    padding: usize,
    /// Text of all cells, without the tabs and line breaks.
    buf: Vec<u8>,
    /// How far into `buf` the current cell's width has been counted.
    pos: usize,
    cell: Cell,
    in_escape: bool,
    lines: Vec<Vec<Cell>>,
    widths: Vec<usize>,
}

impl TabWriter {
    /// A writer padding each column with `padding` spaces.
    pub fn new(padding: usize) -> TabWriter {
        TabWriter {
            out: Vec::new(),
            padding,
            buf: Vec::new(),
            pos: 0,
            cell: Cell::default(),
            in_escape: false,
            lines: vec![Vec::new()],
            widths: Vec::new(),
        }
    }

    /// Writes `text` (Go's `Write`).
    pub fn write(&mut self, text: &[u8]) {
        let mut n = 0;
        for (i, &ch) in text.iter().enumerate() {
            if !self.in_escape {
                match ch {
                    b'\t' | b'\x0b' | b'\n' | b'\x0c' => {
                        self.append(&text[n..i]);
                        self.update_width();
                        n = i + 1;
                        let ncells = self.terminate_cell();
                        if ch == b'\n' || ch == b'\x0c' {
                            self.lines.push(Vec::new());
                            if ch == b'\x0c' || ncells == 1 {
                                self.flush();
                            }
                        }
                    }
                    ESCAPE => {
                        self.append(&text[n..i]);
                        self.update_width();
                        n = i;
                        self.in_escape = true;
                    }
                    _ => {}
                }
            } else if ch == ESCAPE {
                self.append(&text[n..=i]);
                n = i + 1;
                self.end_escape();
            }
        }
        self.append(&text[n..]);
    }

    /// Flushes and returns everything written (Go's `Flush`).
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.out
    }

    fn append(&mut self, text: &[u8]) {
        self.buf.extend_from_slice(text);
        self.cell.size += text.len();
    }

    fn update_width(&mut self) {
        self.cell.width += go_rune_count(&self.buf[self.pos..]) as isize;
        self.pos = self.buf.len();
    }

    fn end_escape(&mut self) {
        self.update_width();
        self.cell.width -= 2; // the two ESCAPE bytes take no width
        self.pos = self.buf.len();
        self.in_escape = false;
    }

    /// Ends the current cell; returns the number of cells on the line.
    fn terminate_cell(&mut self) -> usize {
        let cell = std::mem::take(&mut self.cell);
        match self.lines.last_mut() {
            Some(line) => {
                line.push(cell);
                line.len()
            }
            None => {
                self.lines.push(vec![cell]);
                1
            }
        }
    }

    fn flush(&mut self) {
        if self.cell.size > 0 {
            if self.in_escape {
                self.end_escape();
            }
            self.terminate_cell();
        }
        let nlines = self.lines.len();
        self.format(0, 0, nlines);
        self.buf.clear();
        self.pos = 0;
        self.cell = Cell::default();
        self.in_escape = false;
        self.lines.clear();
        self.lines.push(Vec::new());
        self.widths.clear();
    }

    /// Formats lines `line0..line1`, whose text starts at `buf[pos0]`; returns the
    /// position after them.
    fn format(&mut self, pos0: usize, line0: usize, line1: usize) -> usize {
        let mut pos = pos0;
        let mut line0 = line0;
        let column = self.widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // This line has a cell in this column: a column block starts here.
            pos = self.write_lines(pos, line0, this);
            line0 = this;
            let mut width = 0usize;
            while this < line1 {
                let line = &self.lines[this];
                if column + 1 >= line.len() {
                    break;
                }
                let w = line[column].width + self.padding as isize;
                if w > width as isize {
                    width = w as usize;
                }
                this += 1;
            }
            self.widths.push(width);
            pos = self.format(pos, line0, this);
            self.widths.pop();
            line0 = this;
        }
        self.write_lines(pos, line0, line1)
    }

    fn write_lines(&mut self, pos0: usize, line0: usize, line1: usize) -> usize {
        let mut pos = pos0;
        for i in line0..line1 {
            for (j, c) in self.lines[i].iter().enumerate() {
                if c.size > 0 {
                    self.out.extend_from_slice(&self.buf[pos..pos + c.size]);
                    pos += c.size;
                }
                if let Some(&cell_width) = self.widths.get(j) {
                    let pad = cell_width as isize - c.width;
                    self.out
                        .extend(std::iter::repeat_n(b' ', pad.max(0) as usize));
                }
            }
            if i + 1 == self.lines.len() {
                // The last buffered line has no newline yet: write the pending text.
                self.out
                    .extend_from_slice(&self.buf[pos..pos + self.cell.size]);
                pos += self.cell.size;
            } else {
                self.out.push(b'\n');
            }
        }
        pos
    }
}

/// Go's `utf8.RuneCount`: valid UTF-8 sequences count one each, and so does every byte
/// that is not part of one.
pub fn go_rune_count(bytes: &[u8]) -> usize {
    bytes
        .utf8_chunks()
        .map(|chunk| chunk.valid().chars().count() + chunk.invalid().len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tab(padding: usize, text: &[u8]) -> Vec<u8> {
        let mut tw = TabWriter::new(padding);
        tw.write(text);
        tw.finish()
    }

    #[test]
    fn aligns_a_column() {
        assert_eq!(
            tab(1, b"a:\t1\nlonger:\t2\n"),
            b"a:      1\nlonger: 2\n".to_vec()
        );
    }

    #[test]
    fn leading_empty_cell_becomes_padding() {
        assert_eq!(
            tab(2, b"\tData Type:\tFS\n\tID:\t1\n"),
            b"  Data Type:  FS\n  ID:         1\n".to_vec()
        );
    }

    #[test]
    fn columns_are_blocks_of_consecutive_lines() {
        // Go's own example: the b and c cells are in different columns.
        let text = b"aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n";
        assert_eq!(
            tab(1, text),
            b"aaaa bbb d\naa   b   dd\na    \naa   cccc eee\n".to_vec()
        );
    }

    #[test]
    fn counts_runes_not_bytes() {
        assert_eq!(
            tab(1, "é:\t1\nab:\t2\n".as_bytes()),
            "é:  1\nab: 2\n".as_bytes()
        );
        assert_eq!(go_rune_count(b"\xe2\x82"), 2);
        assert_eq!(go_rune_count("€".as_bytes()), 1);
    }

    #[test]
    fn escaped_text_is_not_split() {
        assert_eq!(
            tab(1, b"\xffa\tb\xff:\tx\nc:\ty\n"),
            b"\xffa\tb\xff: x\nc:   y\n".to_vec()
        );
    }

    #[test]
    fn text_without_newline_is_kept() {
        assert_eq!(tab(1, b"a\tb"), b"a b".to_vec());
        assert_eq!(tab(1, b"abc"), b"abc".to_vec());
        assert_eq!(tab(1, b"\xff\t"), b"\xff\t".to_vec());
    }
}
