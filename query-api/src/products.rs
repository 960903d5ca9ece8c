use std::collections::BTreeMap;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use http_kit::{ApiError, AppQuery, ErrorCode, Problems, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::{decode_cursor, encode_cursor, page_size, MinPosition, Money, Param, QueryState, Viewer};

pub fn router() -> ApiRouter<QueryState> {
    ApiRouter::new()
        .api_route(
            "/products",
            get_with(list, |op| op.describe("list_products", "products", "The catalogue, filtered and sorted, a page at a time.")),
        )
        .api_route(
            "/products/search",
            get_with(search, |op| op.describe("search_products", "products", "Full-text product search with typo tolerance and facets.")),
        )
        .api_route(
            "/products/{id}",
            get_with(detail, |op| op.describe("get_product", "products", "One product.").problems(&[ErrorCode::NotFound])),
        )
        .api_route(
            "/categories",
            get_with(categories, |op| {
                op.describe("list_categories", "products", "The category tree with product counts that include sub-categories.")
            }),
        )
}

const COLUMNS: &str = "product_id, sku, name, name_key, description, category, price_amount, price_currency, attributes, \
                       published, featured, discontinued, created_position, version";

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct ProductView {
    id: String,
    sku: String,
    name: String,
    description: String,
    category: String,
    price: Money,
    attributes: Value,
    published: bool,
    featured: bool,
    discontinued: bool,
    version: i64,
    #[serde(skip)]
    name_key: String,
    #[serde(skip)]
    created_position: i64,
}

impl TryFrom<AnyRow> for ProductView {
    type Error = sqlx::Error;

    fn try_from(r: AnyRow) -> Result<Self, Self::Error> {
        let attributes: String = r.try_get("attributes")?;
        Ok(Self {
            id: r.try_get("product_id")?,
            sku: r.try_get("sku")?,
            name: r.try_get("name")?,
            name_key: r.try_get("name_key")?,
            description: r.try_get("description")?,
            category: r.try_get("category")?,
            price: Money { amount: r.try_get("price_amount")?, currency: r.try_get("price_currency")? },
            attributes: serde_json::from_str(&attributes).unwrap_or(Value::Object(Default::default())),
            published: r.try_get::<i64, _>("published")? == 1,
            featured: r.try_get::<i64, _>("featured")? == 1,
            discontinued: r.try_get::<i64, _>("discontinued")? == 1,
            created_position: r.try_get("created_position")?,
            version: r.try_get("version")?,
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Sort {
    Name,
    Price,
    Newest,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ProductListQuery")]
struct ListQuery {
    category: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    /// Admins only: `true` or `false`; others always see published products only.
    published: Option<bool>,
    featured: Option<bool>,
    sort: Option<Sort>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "ProductPage")]
struct Page {
    items: Vec<ProductView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// Filters a viewer may not lift: the tenant always, and publication for non-admins.
fn visibility(viewer: &Viewer, sql: &mut String, params: &mut Vec<Param>) {
    params.push(Param::Text(viewer.tenant().to_string()));
    sql.push_str(&format!(" WHERE tenant = ${}", params.len()));
    if !viewer.is_admin() {
        sql.push_str(" AND published = 1 AND discontinued = 0");
    }
}

async fn list(
    State(state): State<QueryState>,
    viewer: Viewer,
    min: MinPosition,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    state.consistent("catalogue", min).await?;
    let limit = page_size(q.limit)?;
    let sort = q.sort.unwrap_or(Sort::Name);
    let mut sql = format!("SELECT {COLUMNS} FROM rm_products");
    let mut params = Vec::new();
    visibility(&viewer, &mut sql, &mut params);
    let mut push = |sql: &mut String, clause: &str, p: Param| {
        params.push(p);
        sql.push_str(&clause.replace("$?", &format!("${}", params.len())));
    };
    if let Some(category) = q.category {
        let category: domain::CategoryPath = category.parse()?;
        push(&mut sql, " AND (category = $?", Param::Text(category.to_string()));
        push(&mut sql, " OR category LIKE $?)", Param::Text(format!("{category}/%")));
    }
    if let Some(min) = q.min_price {
        push(&mut sql, " AND price_amount >= $?", Param::Int(min));
    }
    if let Some(max) = q.max_price {
        push(&mut sql, " AND price_amount <= $?", Param::Int(max));
    }
    if let (Some(published), true) = (q.published, viewer.is_admin()) {
        push(&mut sql, " AND published = $?", Param::Int(i64::from(published)));
    }
    if let Some(featured) = q.featured {
        push(&mut sql, " AND featured = $?", Param::Int(i64::from(featured)));
    }
    let (key_column, ascending) = match sort {
        Sort::Name => ("name_key", true),
        Sort::Price => ("price_amount", true),
        Sort::Newest => ("created_position", false),
    };
    if let Some(cursor) = &q.cursor {
        let (key, id) = decode_cursor(cursor)?;
        let key = if sort == Sort::Name {
            Param::Text(key)
        } else {
            Param::Int(key.parse().map_err(|_| ApiError::new(ErrorCode::InvalidValue, "invalid cursor").with("field", "cursor"))?)
        };
        let op = if ascending { ">" } else { "<" };
        let key2 = match &key {
            Param::Text(s) => Param::Text(s.clone()),
            Param::Int(n) => Param::Int(*n),
        };
        push(&mut sql, &format!(" AND ({key_column} {op} $?"), key);
        push(&mut sql, &format!(" OR ({key_column} = $?"), key2);
        push(&mut sql, &format!(" AND product_id {op} $?))"), Param::Text(id));
    }
    let direction = if ascending { "ASC" } else { "DESC" };
    sql.push_str(&format!(" ORDER BY {key_column} {direction}, product_id {direction} LIMIT {}", limit + 1));
    let rows = crate::bound(&sql, params).fetch_all(state.pool()).await.map_err(crate::db_error)?;
    let mut items = rows.into_iter().map(ProductView::try_from).collect::<Result<Vec<_>, _>>().map_err(crate::db_error)?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| {
            let key = match sort {
                Sort::Name => last.name_key.clone(),
                Sort::Price => last.price.amount.to_string(),
                Sort::Newest => last.created_position.to_string(),
            };
            encode_cursor(&key, &last.id)
        })
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

/// Served from the product-detail documents (Redis, or in process); while they are being
/// rebuilt (Redis came back empty) or Redis cannot be reached, from the SQL catalogue, which
/// has the same fields: never stale, never a failure of its own.
async fn detail(
    State(state): State<QueryState>,
    viewer: Viewer,
    min: MinPosition,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Versioned<Value>, ApiError> {
    use projections::detail::Lookup;
    let tenant = viewer.tenant().as_str();
    let lookup = match state.read.details().lookup(tenant, &id).await {
        Ok(Lookup::Rebuilding) => None,
        // Documents that can be trusted, and no position asked for: this answer will do.
        Ok(found) if min.0.is_none() => Some(found),
        // The one at (at least) the position asked for, once the documents have reached it.
        Ok(_) => {
            state.consistent(projections::detail::NAME, min).await?;
            state.read.details().lookup(tenant, &id).await.ok().filter(|l| *l != Lookup::Rebuilding)
        }
        Err(e) => {
            tracing::warn!(error = %e, "product documents unreadable; answering from the catalogue");
            None
        }
    };
    let visible = |d: &Value| viewer.is_admin() || (d["published"] == true && d["discontinued"] == false);
    // A document the documents lack is asked of the catalogue too before the answer is 404:
    // only a product no read model knows is absent (a race with Redis coming back empty made
    // the documents look complete a moment too early once, under a loaded test run).
    let doc = match lookup {
        Some(Lookup::Found(doc)) => Some(doc),
        _ => from_catalogue(&state, &viewer, min, &id).await?,
    };
    let doc = doc.filter(visible).ok_or_else(|| ApiError::not_found("product"))?;
    let version = doc["version"].as_i64().unwrap_or_default();
    Ok(Versioned::new(&headers, version, doc))
}

/// One product as the SQL catalogue has it, in the shape of its document.
async fn from_catalogue(state: &QueryState, viewer: &Viewer, min: MinPosition, id: &str) -> Result<Option<Value>, ApiError> {
    state.consistent("catalogue", min).await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM rm_products WHERE tenant = $1 AND product_id = $2"))
        .bind(viewer.tenant().as_str())
        .bind(id)
        .fetch_optional(state.pool())
        .await
        .map_err(crate::db_error)?;
    let view = row.map(ProductView::try_from).transpose().map_err(crate::db_error)?;
    view.map(|v| serde_json::to_value(v).map_err(ApiError::internal)).transpose()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: Option<String>,
    category: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    /// Admins only, as for the listing.
    published: Option<bool>,
    featured: Option<bool>,
    limit: Option<i64>,
    offset: Option<usize>,
}

/// Deepest page a search serves; narrow the query instead.
const MAX_SEARCH_OFFSET: usize = 10_000;

/// Full-text search with typo tolerance and facets, from the tantivy index.
async fn search(
    State(state): State<QueryState>,
    viewer: Viewer,
    min: MinPosition,
    AppQuery(q): AppQuery<SearchQuery>,
) -> Result<Json<projections::search::SearchResults>, ApiError> {
    let invalid = |field: &str, detail: &str| ApiError::new(ErrorCode::InvalidValue, detail.to_owned()).with("field", field);
    let text = q.q.unwrap_or_default();
    if text.chars().count() > 200 {
        return Err(invalid("q", "q must be at most 200 characters"));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > MAX_SEARCH_OFFSET {
        return Err(invalid("offset", "offset must be at most 10000"));
    }
    if q.min_price.is_some_and(|p| p < 0) || q.max_price.is_some_and(|p| p < 0) {
        return Err(invalid("min_price", "prices must not be negative"));
    }
    let category = q.category.map(|c| c.parse::<domain::CategoryPath>()).transpose()?;
    let limit = page_size(q.limit)? as usize;
    state.consistent(projections::search::NAME, min).await?;
    let request = projections::search::SearchRequest {
        tenant: viewer.tenant().to_string(),
        text,
        category: category.map(|c| c.to_string()),
        min_price: q.min_price,
        max_price: q.max_price,
        featured: q.featured,
        published: q.published,
        admin: viewer.is_admin(),
        limit,
        offset,
    };
    Ok(Json(state.read.search().search(request).await.map_err(ApiError::failure)?))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Category {
    name: String,
    path: String,
    /// Products in this category and all below it.
    count: i64,
    children: Vec<Category>,
}

/// The category tree with product counts that include sub-categories.
async fn categories(State(state): State<QueryState>, viewer: Viewer, min: MinPosition) -> Result<Json<Vec<Category>>, ApiError> {
    state.consistent("catalogue", min).await?;
    let mut sql = "SELECT category, COUNT(*) AS n FROM rm_products".to_owned();
    let mut params = Vec::new();
    visibility(&viewer, &mut sql, &mut params);
    sql.push_str(" GROUP BY category");
    let rows = crate::bound(&sql, params).fetch_all(state.pool()).await.map_err(crate::db_error)?;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows {
        let category: String = r.try_get("category").map_err(crate::db_error)?;
        let n: i64 = r.try_get("n").map_err(crate::db_error)?;
        let path: domain::CategoryPath = category.parse()?;
        for ancestor in path.ancestors_and_self() {
            *counts.entry(ancestor.to_owned()).or_default() += n;
        }
    }
    Ok(Json(tree(&counts, "")))
}

/// The children of `parent` ("" for the roots), depth first.
fn tree(counts: &BTreeMap<String, i64>, parent: &str) -> Vec<Category> {
    counts
        .iter()
        .filter(|(path, _)| match path.rsplit_once('/') {
            Some((p, _)) => p == parent,
            None => parent.is_empty(),
        })
        .map(|(path, count)| Category {
            name: path.rsplit('/').next().unwrap_or(path).to_owned(),
            path: path.clone(),
            count: *count,
            children: tree(counts, path),
        })
        .collect()
}
