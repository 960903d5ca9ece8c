use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};

use crate::orders::Invoice;
use crate::Money;

/// A4 in points.
const PAGE: (f32, f32) = (595.0, 842.0);
const MARGIN: f32 = 50.0;
const RIGHT: f32 = PAGE.0 - MARGIN;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");
/// SKUs longer than this get a row of their own above their figures.
const SKU_CHARS: usize = 40;

/// Text for the base-14 Helvetica in WinAnsiEncoding: ASCII and Latin-1 as they are, the euro
/// sign, `?` for anything else (no font is embedded, so nothing else can be drawn).
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            _ => b'?',
        })
        .collect()
}

/// Advance widths (1/1000 em) of ASCII 32..=126 in Helvetica, from its AFM metrics.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 222, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278,
    278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722,
    667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 222, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556,
    556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// The same for Helvetica-Bold.
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 278, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333,
    333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722,
    667, 944, 667, 667, 611, 333, 278, 333, 584, 556, 278, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, 611,
    611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
];

/// Width in points of WinAnsi `text` at `size`; bytes beyond ASCII count as wide as an `o`.
fn text_width(text: &[u8], bold: bool, size: f32) -> f32 {
    let widths = if bold { &HELVETICA_BOLD } else { &HELVETICA };
    let units: u32 = text.iter().map(|b| u32::from(widths.get(usize::from(b.wrapping_sub(32))).copied().unwrap_or(widths[79]))).sum();
    units as f32 * size / 1000.0
}

/// `1234.50` for 123450 minor units of a currency with two decimals.
fn major(m: &Money) -> String {
    match m.currency.parse::<domain::Currency>() {
        Ok(currency) => domain::Money::new(m.amount, currency).major(),
        Err(_) => m.amount.to_string(),
    }
}

/// A piece of text on a row.
struct Cell {
    text: String,
    /// Left edge, or right edge when `right`.
    x: f32,
    right: bool,
    bold: bool,
}

fn left(x: f32, text: impl Into<String>) -> Cell {
    Cell { text: text.into(), x, right: false, bold: false }
}

fn right(x: f32, text: impl Into<String>) -> Cell {
    Cell { text: text.into(), x, right: true, bold: false }
}

fn bold(mut cell: Cell) -> Cell {
    cell.bold = true;
    cell
}

/// Rows top to bottom, a new page whenever one is full.
struct Layout {
    pages: Vec<Content>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Self { pages: vec![Content::new()], y: PAGE.1 - MARGIN }
    }

    fn row(&mut self, size: f32, cells: Vec<Cell>) {
        let height = size * 1.5;
        if self.y - height < MARGIN {
            self.pages.push(Content::new());
            self.y = PAGE.1 - MARGIN;
        }
        self.y -= height;
        let page = self.pages.last_mut().expect("a layout always has a page");
        for cell in cells {
            let text = win_ansi(&cell.text);
            let x = if cell.right { cell.x - text_width(&text, cell.bold, size) } else { cell.x };
            page.begin_text();
            page.set_font(if cell.bold { BOLD } else { REGULAR }, size);
            page.next_line(x, self.y);
            page.show(Str(&text));
            page.end_text();
        }
    }

    fn gap(&mut self, points: f32) {
        self.y -= points;
    }
}

/// The invoice on A4 pages (one unless it has many lines), in Helvetica.
pub(crate) fn render(invoice: &Invoice) -> Vec<u8> {
    let mut layout = Layout::new();
    layout.row(20.0, vec![bold(left(MARGIN, format!("Invoice {}", invoice.number)))]);
    layout.gap(6.0);
    let issued = invoice.issued_at.get(..10).unwrap_or(&invoice.issued_at);
    let seller = &invoice.seller;
    let mut facts = vec![("Issued", issued.to_owned()), ("Order", invoice.order_id.clone()), ("Seller", seller.name.clone())];
    if let Some(a) = &seller.address {
        facts.push(("", a.line1.clone()));
        facts.push(("", format!("{} {}", a.postal_code, a.city)));
        facts.push(("", a.country.clone()));
    }
    if let Some(vat_id) = &seller.vat_id {
        facts.push(("VAT id", vat_id.clone()));
    }
    facts.push(("Customer", invoice.customer.clone()));
    for (label, value) in facts {
        layout.row(10.0, vec![left(MARGIN, label), left(MARGIN + 70.0, value)]);
    }
    layout.gap(12.0);
    let to = &invoice.bill_to;
    layout.row(10.0, vec![bold(left(MARGIN, "Bill to"))]);
    let city = match &to.region {
        Some(region) => format!("{} {}, {region}", to.postal_code, to.city),
        None => format!("{} {}", to.postal_code, to.city),
    };
    for line in
        [Some(to.name.clone()), Some(to.line1.clone()), to.line2.clone(), Some(city), Some(to.country.clone())].into_iter().flatten()
    {
        layout.row(10.0, vec![left(MARGIN, line)]);
    }
    layout.gap(12.0);
    let currency = &invoice.total.currency;
    let (quantity_x, unit_x) = (RIGHT - 190.0, RIGHT - 95.0);
    layout.row(
        10.0,
        vec![
            bold(left(MARGIN, "SKU")),
            bold(right(quantity_x, "Quantity")),
            bold(right(unit_x, format!("Unit price {currency}"))),
            bold(right(RIGHT, format!("Amount {currency}"))),
        ],
    );
    for line in &invoice.lines {
        let figures =
            vec![right(quantity_x, line.quantity.to_string()), right(unit_x, major(&line.unit_price)), right(RIGHT, major(&line.amount))];
        // The SKU with the product's name next to it; a long one gets a row of its own.
        let label = match &line.name {
            Some(name) => format!("{} {name}", line.sku),
            None => line.sku.clone(),
        };
        if label.chars().count() > SKU_CHARS {
            layout.row(10.0, vec![left(MARGIN, label)]);
            layout.row(10.0, figures);
        } else {
            let mut cells = vec![left(MARGIN, label)];
            cells.extend(figures);
            layout.row(10.0, cells);
        }
    }
    layout.gap(12.0);
    let mut totals = vec![("Subtotal".to_owned(), invoice.subtotal.clone())];
    if let Some(d) = &invoice.discount {
        totals.push((format!("Discount {}", d.code), Money { amount: -d.amount.amount, currency: d.amount.currency.clone() }));
    }
    let tax = match invoice.tax_rate_bp {
        Some(bp) => format!("Tax {}.{:02}%", bp / 100, bp % 100),
        None => "Tax".to_owned(),
    };
    totals.extend([
        (tax, invoice.tax.clone()),
        ("Shipping".to_owned(), invoice.shipping.clone()),
        ("Total".to_owned(), invoice.total.clone()),
    ]);
    if invoice.refunded.amount != 0 {
        totals.push(("Refunded".to_owned(), invoice.refunded.clone()));
    }
    for (label, amount) in totals {
        let row = vec![left(unit_x - 110.0, format!("{label} {currency}")), right(RIGHT, major(&amount))];
        layout.row(10.0, if label == "Total" { row.into_iter().map(bold).collect() } else { row });
    }
    document(layout.pages)
}

/// The PDF file of `pages`, with the two Helvetica faces they use.
fn document(pages: Vec<Content>) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let (catalog, tree, regular, bold) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4));
    let ids: Vec<(Ref, Ref)> = (0..pages.len() as i32).map(|i| (Ref::new(5 + 2 * i), Ref::new(6 + 2 * i))).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(ids.iter().map(|(page, _)| *page)).count(ids.len() as i32);
    for ((page_id, content_id), content) in ids.into_iter().zip(pages) {
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE.0, PAGE.1));
        page.parent(tree);
        page.contents(content_id);
        page.resources().fonts().pair(REGULAR, regular).pair(BOLD, bold);
        drop(page);
        pdf.stream(content_id, &content.finish());
    }
    pdf.type1_font(regular).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{Address, LineView};

    fn eur(amount: i64) -> Money {
        Money { amount, currency: "EUR".into() }
    }

    fn invoice(lines: usize) -> Invoice {
        Invoice {
            number: 4711,
            order_id: "0193a000-0000-7000-8000-000000000001".into(),
            issued_at: "2026-03-01T10:00:00.000Z".into(),
            seller: crate::orders::Seller {
                name: "Acme GmbH".into(),
                address: Some(crate::orders::SellerAddress {
                    line1: "2 Market Sq".into(),
                    city: "Hamburg".into(),
                    postal_code: "20095".into(),
                    country: "DE".into(),
                }),
                vat_id: Some("DE123456789".into()),
            },
            customer: "0193a000-0000-7000-8000-000000000002".into(),
            bill_to: Address {
                name: "Zoë Müller (Büro)".into(),
                line1: "1 Main St".into(),
                line2: Some("Hinterhaus, 3. OG".into()),
                city: "Berlin".into(),
                region: None,
                postal_code: "10115".into(),
                country: "DE".parse().expect("valid"),
            },
            lines: (0..lines)
                .map(|i| LineView {
                    sku: format!("SKU-{i}"),
                    name: Some("Desk lamp".into()),
                    quantity: 2,
                    unit_price: eur(1_000),
                    amount: eur(2_000),
                })
                .collect(),
            subtotal: eur(2_000 * lines as i64),
            discount: Some(crate::orders::DiscountView { code: "TEN".into(), amount: eur(200) }),
            tax: eur(400),
            tax_rate_bp: Some(1_900),
            shipping: eur(499),
            total: eur(2_899),
            refunded: eur(500),
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_pdf_shows_the_number_lines_and_totals_in_helvetica() {
        let pdf = render(&invoice(1));
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(pdf.ends_with(b"%%EOF") || pdf.ends_with(b"%%EOF\n"));
        for text in [
            &b"(Invoice 4711)"[..],
            b"(SKU-0 Desk lamp)",
            b"(Acme GmbH)",
            b"(DE123456789)",
            b"(20095 Hamburg)",
            b"(Discount TEN EUR)",
            b"(-2.00)",
            b"(Tax 19.00% EUR)",
            b"(20.00)",
            b"(28.99)",
            b"(5.00)",
            b"/Helvetica",
            b"/WinAnsiEncoding",
        ] {
            assert!(contains(&pdf, text), "{}", String::from_utf8_lossy(text));
        }
        assert_eq!(pages(&pdf), 1);
    }

    /// Pages (`/Type /Page`, not the `/Type /Pages` tree).
    fn pages(pdf: &[u8]) -> usize {
        pdf.windows(12).filter(|w| w.starts_with(b"/Type /Page") && w[11] != b's').count()
    }

    #[test]
    fn latin_1_is_kept_and_other_text_replaced() {
        assert_eq!(win_ansi("Zoë €5 → ok"), b"Zo\xeb \x805 ? ok");
        let hex: String = win_ansi("Zoë Müller (Büro)").iter().map(|b| format!("{b:02x}")).collect();
        let pdf = String::from_utf8_lossy(&render(&invoice(1))).to_lowercase();
        assert!(pdf.contains(&format!("<{hex}>")), "the name as a hex string");
    }

    #[test]
    fn many_lines_flow_onto_more_a4_pages() {
        let pdf = render(&invoice(120));
        assert!(pages(&pdf) >= 3, "{} pages", pages(&pdf));
        assert!(contains(&pdf, b"(SKU-119 Desk lamp)"));
    }

    #[test]
    fn widths_come_from_the_font_metrics() {
        for (text, bold, expected) in [(&b"10.00"[..], false, 25.02), (b"W", true, 9.44), (b" ~", false, 8.62), (b"\xfc", false, 5.56)] {
            assert!((text_width(text, bold, 10.0) - expected).abs() < 1e-3, "{text:?}");
        }
    }

    #[test]
    fn amounts_follow_the_currency_s_decimals() {
        assert_eq!(major(&eur(123_450)), "1234.50");
        assert_eq!(major(&eur(-5)), "-0.05");
        assert_eq!(major(&Money { amount: 500, currency: "JPY".into() }), "500");
    }
}
