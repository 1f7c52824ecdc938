//! The FOCUS 1.2 cost-and-usage export of a revision (`focus.parquet`,
//! `focus.csv`): one row per invoice line and one per correction line, in
//! the columns of the FinOps Open Cost and Usage Specification.
//!
//! Owns the mapping from capbill's lines to FOCUS columns (README, "FOCUS
//! export"); it bills and rounds nothing: every amount is a line's amount or
//! a correction's, and the list and contracted costs are exact products of
//! a price and the line's quantity. Corrections arrive as the `corrections`
//! frame the pipeline built (export does not import `revision`); names of
//! corrected entities and the list prices of deal lines come from the
//! directory the month was rated on.

use std::collections::BTreeMap;

use polars::prelude::*;
use rust_decimal::Decimal;

use super::{Encoded, ExportError};
use crate::directory::Directory;
use crate::formats::{self, decimal_column, exact_decimal_column};
use crate::model::{BillingMonth, Day, InvoiceLine, Unit};
use crate::money::{AMOUNT_SCALE, Exact, QUANTITY_SCALE};

/// The name of the output (`focus.parquet`, `focus.csv`).
pub const TABLE: &str = "focus";

/// `ServiceCategory` of every row.
pub const SERVICE_CATEGORY: &str = "Storage";
/// `ServiceSubcategory` of every row.
pub const SERVICE_SUBCATEGORY: &str = "Other (Storage)";
/// `ServiceName` of every row.
pub const SERVICE_NAME: &str = "Storage Capacity";
/// `ChargeClass` of correction rows.
pub const CORRECTION: &str = "Correction";

/// What a revision's FOCUS export is built from.
#[derive(Debug, Clone, Copy)]
pub struct FocusInput<'a, 'd> {
    /// The billing month.
    pub month: BillingMonth,
    /// The revision being published.
    pub revision: u32,
    /// The capacity unit of quantities.
    pub unit: Unit,
    /// The revision's invoice lines, in output order.
    pub lines: &'a [InvoiceLine<'d>],
    /// The directory the month was rated on.
    pub directory: &'a Directory,
    /// The final revision corrected and the `corrections` frame, if this
    /// revision corrects one.
    pub corrections: Option<(u32, &'a DataFrame)>,
    /// The revision's `invoices` table, for the e-invoice numbers
    /// (`x_InvoiceNumber`); `None` where there is none.
    pub invoices: Option<&'a DataFrame>,
}

/// One FOCUS row before it becomes columns.
struct Row<'a> {
    seller_id: &'a str,
    seller_name: &'a str,
    buyer_id: &'a str,
    buyer_name: &'a str,
    customer_id: &'a str,
    customer_name: &'a str,
    contract_id: &'a str,
    charge: &'a str,
    currency: &'a str,
    quantity: Decimal,
    list_price: Option<Decimal>,
    contracted_price: Option<Decimal>,
    /// Exact products (a price × a quantity can need more digits than a `Decimal`).
    list_cost: Exact,
    contracted_cost: Exact,
    billed: Decimal,
    days: Option<u32>,
    deal_id: Option<&'a str>,
    /// The revision corrected, on correction rows.
    corrects: Option<u32>,
}

impl Row<'_> {
    fn purchase(&self) -> bool {
        self.charge == "reserved"
    }

    fn invoice_id(&self, month: BillingMonth, revision: u32) -> String {
        let (seller, buyer) = (invoice_id_part(self.seller_id), invoice_id_part(self.buyer_id));
        let base = format!("{month}/{seller}/{buyer}/{}/r{revision}", self.currency);
        match self.corrects {
            Some(prev) => format!("{base}-corrects-r{prev}"),
            None => base,
        }
    }

    fn description(&self) -> String {
        let what = match self.charge {
            "reserved" => "Reserved capacity",
            "overage" => "Capacity used above the reserved capacity",
            "minimum" => "Top-up to the monthly minimum capacity",
            _ => "Used capacity",
        };
        let mut text =
            format!("{what} of {} ({}), contract {}", self.customer_name, self.customer_id, self.contract_id);
        if let Some(days) = self.days {
            text.push_str(&format!(", {days} days"));
        }
        if let Some(deal) = self.deal_id {
            text.push_str(&format!(", deal {deal} special price"));
        }
        if let Some(prev) = self.corrects {
            text = format!("Correction of revision {prev}: {text}");
        }
        text
    }

    fn meter(&self) -> &'static str {
        match self.charge {
            "reserved" => "Reserved capacity",
            "overage" => "Overage capacity",
            "minimum" => "Minimum capacity",
            _ => "Used capacity",
        }
    }

    /// Capacity actually stored: the line's quantity for used capacity and
    /// overage, none for the minimum's top-up, null on the reserved purchase.
    fn consumed(&self) -> Option<Decimal> {
        match self.charge {
            "reserved" => None,
            "minimum" => Some(Decimal::ZERO),
            _ => Some(self.quantity),
        }
    }
}

/// The FOCUS frame of a revision: invoice lines in output order, then
/// correction lines in key order.
pub fn focus_frame(input: &FocusInput<'_, '_>) -> PolarsResult<DataFrame> {
    let list_prices: BTreeMap<&str, Decimal> = {
        let wanted: std::collections::BTreeSet<&str> =
            input.lines.iter().filter(|l| l.deal_id.is_some()).map(|l| l.contract_id).collect();
        input
            .directory
            .contracts
            .iter()
            .filter(|k| wanted.contains(k.id.as_str()))
            .map(|k| (k.id.as_str(), k.unit_price))
            .collect()
    };
    let product = |price: Decimal, quantity: Decimal| {
        Exact::product(price, quantity)
            .map_err(|_| PolarsError::ComputeError(format!("{price} × {quantity} does not fit a decimal").into()))
    };
    let mut rows: Vec<Row<'_>> = input
        .lines
        .iter()
        .map(|l| {
            // The deal's special price is the contracted price; the
            // contract's own price is the list price it replaces.
            let list = match l.deal_id {
                Some(_) => list_prices.get(l.contract_id).copied().unwrap_or(l.unit_price),
                None => l.unit_price,
            };
            Ok(Row {
                seller_id: l.seller_id,
                seller_name: l.seller_name,
                buyer_id: l.buyer_id,
                buyer_name: l.buyer_name,
                customer_id: l.customer_id,
                customer_name: l.customer_name,
                contract_id: l.contract_id,
                charge: l.charge.as_str(),
                currency: l.currency.as_str(),
                quantity: l.quantity,
                list_price: Some(list),
                contracted_price: Some(l.unit_price),
                list_cost: product(list, l.quantity)?,
                contracted_cost: product(l.unit_price, l.quantity)?,
                billed: l.amount,
                days: Some(l.days),
                deal_id: l.deal_id,
                corrects: None,
            })
        })
        .collect::<PolarsResult<_>>()?;
    let corrections = match input.corrections {
        Some((prev, df)) => Some((prev, CorrectionColumns::of(df)?)),
        None => None,
    };
    if let Some((prev, c)) = &corrections {
        rows.extend(c.rows(input.directory, *prev));
    }
    build(input, &rows)
}

/// The text and decimal columns of a `corrections` frame.
struct CorrectionColumns {
    text: [StringChunked; 6],
    quantity: Vec<Decimal>,
    amount: Vec<Decimal>,
}

impl CorrectionColumns {
    fn of(df: &DataFrame) -> PolarsResult<Self> {
        let s = |n: &str| df.column(n).and_then(|c| c.str().cloned());
        Ok(CorrectionColumns {
            text: [s("seller_id")?, s("buyer_id")?, s("customer_id")?, s("contract_id")?, s("charge")?, s("currency")?],
            quantity: formats::decimals(df, "quantity")?,
            amount: formats::decimals(df, "amount")?,
        })
    }

    fn rows<'a>(&'a self, directory: &'a Directory, prev: u32) -> impl Iterator<Item = Row<'a>> + 'a {
        let name = move |id: &'a str| directory.entity(id).map_or(id, |e| directory.entities[e].name.as_str());
        (0..self.quantity.len()).map(move |i| {
            let [seller, buyer, customer, contract, charge, currency] =
                self.text.each_ref().map(|c| c.get(i).unwrap_or_default());
            let amount = self.amount[i];
            Row {
                seller_id: seller,
                seller_name: name(seller),
                buyer_id: buyer,
                buyer_name: name(buyer),
                customer_id: customer,
                customer_name: name(customer),
                contract_id: contract,
                charge,
                currency,
                quantity: self.quantity[i],
                list_price: None,
                contracted_price: None,
                list_cost: Exact::of(amount),
                contracted_cost: Exact::of(amount),
                billed: amount,
                days: None,
                deal_id: None,
                corrects: Some(prev),
            }
        })
    }
}

/// An id as a part of `InvoiceId`: `%` and `/` percent-encoded (`x/y` →
/// `x%2Fy`), so that the parts split back unambiguously and two invoices
/// never share an id (sellers `x` and `x/y`, buyers `y/z` and `z`, would
/// otherwise both give `x/y/z`). Any other id is written as it is.
fn invoice_id_part(id: &str) -> std::borrow::Cow<'_, str> {
    if id.contains(['%', '/']) {
        std::borrow::Cow::Owned(id.replace('%', "%25").replace('/', "%2F"))
    } else {
        std::borrow::Cow::Borrowed(id)
    }
}

/// Milliseconds since the epoch of a day's midnight, UTC.
fn midnight_ms(day: Day) -> i64 {
    i64::from(day) * 86_400_000
}

fn datetime_column(name: &str, ms: i64, n: usize) -> Column {
    Int64Chunked::from_vec(name.into(), vec![ms; n])
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series()
        .into_column()
}

fn build(input: &FocusInput<'_, '_>, rows: &[Row<'_>]) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let numbers = match input.invoices {
        Some(df) => super::invoice_numbers(df)?,
        None => BTreeMap::new(),
    };
    // A line row is part of the e-invoice of its invoice; a correction row
    // of no single document (the credit note and the new invoice share it).
    let number_of = |r: &Row<'_>| match r.corrects {
        None => numbers.get(&(r.seller_id.to_owned(), r.buyer_id.to_owned(), r.currency.to_owned())).cloned(),
        Some(_) => None,
    };
    let (month, revision) = (input.month, input.revision);
    let unit = pricing_unit(input.unit);
    let price_scale = rows
        .iter()
        .flat_map(|r| [r.list_price, r.contracted_price])
        .flatten()
        .map(|p| p.scale())
        .max()
        .unwrap_or(AMOUNT_SCALE)
        .max(AMOUNT_SCALE);
    let cost_scale = QUANTITY_SCALE + price_scale;
    let text = |f: for<'r> fn(&'r Row<'_>) -> &'r str| rows.iter().map(f).collect::<Vec<_>>();
    let owned = |f: &dyn Fn(&Row<'_>) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let fixed = |v: &str| vec![v.to_owned(); n];
    let start = midnight_ms(month.first_day());
    let end = midnight_ms(month.end_day());
    let mut columns = vec![
        decimal_column("BilledCost", rows.iter().map(|r| Some(r.billed)), AMOUNT_SCALE)?,
        Column::new("BillingAccountId".into(), text(|r| r.buyer_id)),
        Column::new("BillingAccountName".into(), text(|r| r.buyer_name)),
        Column::new("BillingCurrency".into(), text(|r| r.currency)),
        datetime_column("BillingPeriodEnd", end, n),
        datetime_column("BillingPeriodStart", start, n),
        Column::new(
            "ChargeCategory".into(),
            rows.iter().map(|r| if r.purchase() { "Purchase" } else { "Usage" }).collect::<Vec<_>>(),
        ),
        Column::new("ChargeClass".into(), rows.iter().map(|r| r.corrects.map(|_| CORRECTION)).collect::<Vec<_>>()),
        Column::new("ChargeDescription".into(), owned(&|r| r.description())),
        Column::new(
            "ChargeFrequency".into(),
            rows.iter().map(|r| if r.purchase() { "Recurring" } else { "Usage-Based" }).collect::<Vec<_>>(),
        ),
        datetime_column("ChargePeriodEnd", end, n),
        datetime_column("ChargePeriodStart", start, n),
        // No commitment discounts: null, but present, because FOCUS's
        // ConsumedQuantity nullability rules are conditioned on it.
        Column::new("CommitmentDiscountStatus".into(), vec![None::<&str>; n]),
        decimal_column("ConsumedQuantity", rows.iter().map(Row::consumed), QUANTITY_SCALE)?,
        Column::new("ConsumedUnit".into(), rows.iter().map(|r| r.consumed().map(|_| unit)).collect::<Vec<_>>()),
        exact_decimal_column("ContractedCost", rows.iter().map(|r| Some(r.contracted_cost)), cost_scale)?,
        decimal_column("ContractedUnitPrice", rows.iter().map(|r| r.contracted_price), price_scale)?,
        decimal_column("EffectiveCost", rows.iter().map(effective_cost), AMOUNT_SCALE)?,
        Column::new("InvoiceId".into(), owned(&|r| r.invoice_id(month, revision))),
        Column::new("InvoiceIssuerName".into(), text(|r| r.seller_name)),
        exact_decimal_column("ListCost", rows.iter().map(|r| Some(r.list_cost)), cost_scale)?,
        decimal_column("ListUnitPrice", rows.iter().map(|r| r.list_price), price_scale)?,
        // Prices are in the billing currency: the pricing-currency columns
        // repeat it and its prices (FOCUS: they MAY be present).
        Column::new("PricingCurrency".into(), text(|r| r.currency)),
        decimal_column("PricingCurrencyContractedUnitPrice", rows.iter().map(|r| r.contracted_price), price_scale)?,
        decimal_column("PricingCurrencyEffectiveCost", rows.iter().map(effective_cost), AMOUNT_SCALE)?,
        decimal_column("PricingCurrencyListUnitPrice", rows.iter().map(|r| r.list_price), price_scale)?,
        decimal_column("PricingQuantity", rows.iter().map(|r| Some(r.quantity)), QUANTITY_SCALE)?,
        Column::new("PricingUnit".into(), fixed(unit)),
        Column::new("ProviderName".into(), text(|r| r.seller_name)),
        Column::new("PublisherName".into(), text(|r| r.seller_name)),
        Column::new("ServiceCategory".into(), fixed(SERVICE_CATEGORY)),
        Column::new("ServiceName".into(), fixed(SERVICE_NAME)),
        Column::new("ServiceSubcategory".into(), fixed(SERVICE_SUBCATEGORY)),
        Column::new("SkuId".into(), owned(&|r| sku_id(r.charge, unit))),
        Column::new("SkuMeter".into(), text(|r| r.meter())),
        Column::new("SkuPriceDetails".into(), vec![None::<&str>; n]),
        Column::new(
            "SkuPriceId".into(),
            rows.iter()
                .map(|r| {
                    r.corrects.is_none().then(|| {
                        let sku = sku_id(r.charge, unit);
                        match r.deal_id {
                            Some(deal) => format!("{sku}/{}/{deal}", r.contract_id),
                            None => format!("{sku}/{}", r.contract_id),
                        }
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Column::new("SubAccountId".into(), text(|r| r.customer_id)),
        Column::new("SubAccountName".into(), text(|r| r.customer_name)),
    ];
    columns.extend([
        Column::new("x_BillingMonth".into(), fixed(&month.to_string())),
        Column::new("x_SellerId".into(), text(|r| r.seller_id)),
        Column::new("x_BuyerId".into(), text(|r| r.buyer_id)),
        Column::new("x_ContractId".into(), text(|r| r.contract_id)),
        Column::new("x_Charge".into(), text(|r| r.charge)),
        Column::new("x_DealId".into(), rows.iter().map(|r| r.deal_id).collect::<Vec<_>>()),
        Column::new("x_Days".into(), rows.iter().map(|r| r.days).collect::<Vec<_>>()),
        Column::new("x_Revision".into(), vec![revision; n]),
        Column::new("x_CorrectsRevision".into(), rows.iter().map(|r| r.corrects).collect::<Vec<_>>()),
        Column::new("x_InvoiceNumber".into(), rows.iter().map(number_of).collect::<Vec<_>>()),
    ]);
    DataFrame::new(n, columns)
}

/// `EffectiveCost`: the billed amount, but 0 on the reserved-capacity
/// purchase (FOCUS: a purchase's cost shows in EffectiveCost only through
/// the usage it covers; capbill has no usage rows for the reserved part).
fn effective_cost(r: &Row<'_>) -> Option<Decimal> {
    Some(if r.purchase() { Decimal::ZERO } else { r.billed })
}

/// `PricingUnit` and `ConsumedUnit` in FOCUS's unit format.
pub fn pricing_unit(unit: Unit) -> &'static str {
    match unit {
        Unit::Tb => "TB-Months",
        Unit::Tib => "TiB-Months",
    }
}

/// `SkuId`: the charge kind and the unit (`usage-TB-Months`).
fn sku_id(charge: &str, unit: &str) -> String {
    format!("{charge}-{unit}")
}

/// FOCUS date/times: ISO 8601 in UTC with a `Z` (`2026-10-01T00:00:00Z`).
const DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// The FOCUS export as Parquet and CSV. The CSV writes date/times in
/// FOCUS's format; everything else is encoded as every other table. With
/// `one_at_a_time` the two files are encoded one after the other (a large
/// month: at 10 x W-hourly, 90-100 MB less at once, 0.3 s longer).
pub fn encode(input: &FocusInput<'_, '_>, one_at_a_time: bool) -> Result<Vec<Encoded>, ExportError> {
    let df = focus_frame(input).map_err(|source| ExportError::Encode { table: TABLE, source })?;
    super::tables::encode_formats(TABLE, &df, [("parquet", formats::write_parquet), ("csv", write_csv)], one_at_a_time)
}

fn write_csv(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buf = formats::encoding_buffer(df);
    CsvWriter::new(&mut buf).include_header(true).with_datetime_format(Some(DATETIME_FORMAT.into())).finish(df)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::parse_tables;
    use crate::model::Charge;
    use crate::money::Currency;

    fn directory(price: &str) -> Directory {
        let t = |name: &str, text: String| (name.to_owned(), bytes::Bytes::from(text));
        parse_tables(
            t("entities.csv", "entity_id,name,kind,partner_type,parent_id\nv,Vendor,vendor,,\nc,Customer,customer,,v\n".into()),
            t("storage_accounts.csv", "storage_account_id,company_name,owner_id,created_on,deleted_on\n".into()),
            t(
                "contracts.csv",
                format!(
                    "contract_id,seller_id,buyer_id,model,reserved_tb,unit_price,overage_price,minimum_tb,currency,start_date,end_date\n\
                     K,v,c,pay_per_use,,{price},,,EUR,2026-01-01,\n"
                ),
            ),
            t("deals.csv", "deal_id,partner_id,customer_id,volume_tb,special_price,status,valid_from,valid_to\n".into()),
        )
        .unwrap()
    }

    fn line(quantity: Decimal, deal_id: Option<&str>) -> InvoiceLine<'_> {
        InvoiceLine {
            seller_id: "v",
            seller_name: "Vendor",
            buyer_id: "c",
            buyer_name: "Customer",
            customer_id: "c",
            customer_name: "Customer",
            contract_id: "K",
            charge: Charge::Usage,
            quantity,
            unit_price: Decimal::new(650, 2),
            amount: Decimal::new(1100, 2),
            currency: Currency::parse("EUR").unwrap(),
            days: 31,
            deal_id,
        }
    }

    fn input<'a, 'd>(lines: &'a [InvoiceLine<'d>], directory: &'a Directory) -> FocusInput<'a, 'd> {
        FocusInput {
            month: "2026-10".parse().unwrap(),
            revision: 1,
            unit: Unit::Tib,
            lines,
            directory,
            corrections: None,
            invoices: None,
        }
    }

    #[test]
    fn columns_are_typed_and_costs_are_exact_products() {
        let directory = directory("7.9900");
        let lines = [line(Decimal::new(1_693_548, 6), Some("DR-1"))];
        let df = focus_frame(&input(&lines, &directory)).unwrap();
        let dtype = |c: &str| df.column(c).unwrap().dtype().clone();
        assert_eq!(dtype("BillingPeriodStart"), DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC)));
        assert_eq!(dtype("BilledCost"), DataType::Decimal(38, 2));
        // Prices take the largest price scale (the contract's 4), costs 6 more.
        assert_eq!(dtype("ListUnitPrice"), DataType::Decimal(38, 4));
        assert_eq!(dtype("ListCost"), DataType::Decimal(38, 10));
        assert_eq!(formats::decimals(&df, "ListUnitPrice").unwrap(), [Decimal::new(79_900, 4)]);
        assert_eq!(formats::decimals(&df, "ListCost").unwrap(), [Decimal::new(79_900, 4) * Decimal::new(1_693_548, 6)]);
        assert_eq!(
            formats::decimals(&df, "ContractedCost").unwrap(),
            [Decimal::new(650, 2) * Decimal::new(1_693_548, 6)]
        );
        assert_eq!(formats::decimals(&df, "BilledCost").unwrap(), [Decimal::new(1100, 2)]);
        let text = |c: &str| df.column(c).unwrap().str().unwrap().get(0).map(str::to_owned);
        assert_eq!(text("PricingUnit").as_deref(), Some("TiB-Months"));
        assert_eq!(text("SkuPriceId").as_deref(), Some("usage-TiB-Months/K/DR-1"));
        assert_eq!(text("ChargeClass"), None);
    }

    #[test]
    fn the_files_are_the_same_encoded_at_once_or_one_after_the_other() {
        let directory = directory("7.9900");
        let lines = [line(Decimal::new(1_693_548, 6), Some("DR-1")), line(Decimal::new(2, 0), None)];
        let at_once = encode(&input(&lines, &directory), false).unwrap();
        let in_turn = encode(&input(&lines, &directory), true).unwrap();
        let files = |f: &[Encoded]| f.iter().map(|e| (e.file.clone(), e.rows, e.data.clone())).collect::<Vec<_>>();
        assert_eq!(files(&at_once), files(&in_turn));
        assert_eq!(at_once.iter().map(|e| e.file.as_str()).collect::<Vec<_>>(), ["focus.parquet", "focus.csv"]);
    }

    #[test]
    fn a_month_without_lines_has_an_empty_export_with_every_column() {
        let directory = directory("7.99");
        let files = encode(&input(&[], &directory), false).unwrap();
        assert_eq!(
            files.iter().map(|f| (f.file.as_str(), f.rows)).collect::<Vec<_>>(),
            [("focus.parquet", 0), ("focus.csv", 0)]
        );
        let header = String::from_utf8(files[1].data.clone()).unwrap();
        assert!(
            header.starts_with("BilledCost,BillingAccountId,")
                && header.trim_end().ends_with(",x_CorrectsRevision,x_InvoiceNumber")
        );
        let back = formats::read_parquet(bytes::Bytes::from(files[0].data.clone())).unwrap();
        assert_eq!(back.width(), header.trim_end().split(',').count());
    }

    #[test]
    fn invoice_ids_stay_distinct_when_ids_hold_slashes_or_percent_signs() {
        assert_eq!(invoice_id_part("msp-b"), "msp-b");
        assert_eq!(invoice_id_part("x/y"), "x%2Fy");
        assert_eq!(invoice_id_part("50%/a"), "50%25%2Fa");
        // (seller, buyer) pairs whose ids joined by `/` read the same.
        let pairs = [("x", "y/z"), ("x/y", "z"), ("x%2Fy", "z")];
        let ids: std::collections::BTreeSet<String> =
            pairs.iter().map(|(s, b)| format!("{}/{}", invoice_id_part(s), invoice_id_part(b))).collect();
        assert_eq!(ids.len(), pairs.len(), "{ids:?}");
    }

    #[test]
    fn a_cost_that_does_not_fit_a_decimal_is_an_error_not_a_panic() {
        // The directory bounds prices (and rating quantities) far below
        // this; a list price is still multiplied with care.
        let mut directory = directory("7.99");
        directory.contracts[0].unit_price = Decimal::MAX;
        let lines = [line(Decimal::new(1_000_000, 0), Some("DR-1"))];
        let err = focus_frame(&input(&lines, &directory)).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
}
