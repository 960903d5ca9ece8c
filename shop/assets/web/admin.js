// The admin console. The API decides who may do what; these pages only follow it.
import { html, useState } from './vendor/preact-htm.module.js';
import { api, money, isAdmin, newKey, Problem } from './api.js';
import { Link, navigate, useLoad, Loading, ErrorNote, Form, statusWords, reasonWords } from './ui.js';

const SECTIONS = [
  ['dashboard', 'Dashboard'],
  ['products', 'Products'],
  ['stock', 'Stock'],
  ['orders', 'Orders'],
];

export function Admin({ section, rest, query }) {
  if (!isAdmin()) {
    return html`<div><h1>Admins only</h1><p>Sign in with an admin account. <${Link} href="/signin?next=/admin">Sign in<//></p></div>`;
  }
  const page = {
    dashboard: () => html`<${Dashboard} />`,
    products: () => (rest[0] ? html`<${ProductEditor} id=${rest[0]} />` : html`<${Products} />`),
    stock: () => html`<${Stock} query=${query} />`,
    orders: () => (rest[0] ? html`<${OrderDetail} id=${rest[0]} />` : html`<${Orders} query=${query} />`),
  }[section];
  return html`<div class="admin">
    <nav class="tabs" aria-label="Admin">
      ${SECTIONS.map(([s, label]) => html`<${Link} href=${`/admin/${s}`} aria-current=${s === section ? 'page' : undefined}>${label}<//>`)}
    </nav>
    ${page ? page() : html`<p>No such section.</p>`}
  </div>`;
}

function day(offset) {
  const d = new Date(Date.now() + offset * 86_400_000);
  return d.toISOString().slice(0, 10);
}

/** Revenue by day as an inline SVG bar chart (one currency: the first seen). */
function RevenueChart({ days }) {
  if (!days.length) return html`<p class="muted">No revenue in these 30 days.</p>`;
  const currency = days[0].currency;
  const rows = days.filter((d) => d.currency === currency);
  const max = Math.max(...rows.map((d) => d.revenue), 1);
  const w = 600;
  const h = 160;
  const bar = w / Math.max(rows.length, 1);
  return html`<figure>
    <svg viewBox=${`0 0 ${w} ${h + 20}`} role="img" aria-label=${`Revenue by day in ${currency}`} class="chart">
      ${rows.map((d, i) => {
        const bh = Math.max(1, (d.revenue / max) * h);
        return html`<g>
          <title>${d.day}: ${money({ amount: d.revenue, currency })}, ${d.orders} orders</title>
          <rect x=${i * bar + 2} y=${h - bh} width=${Math.max(bar - 4, 1)} height=${bh} class="bar" />
          <text x=${i * bar + bar / 2} y=${h + 14} text-anchor="middle" class="axis">${d.day.slice(5)}</text>
        </g>`;
      })}
    </svg>
    <figcaption>Revenue by day (${currency}), confirmed, shipped and delivered orders less refunds</figcaption>
  </figure>`;
}

function Dashboard() {
  const sales = useLoad(() => api(`/admin/analytics/sales?from=${day(-29)}&to=${day(0)}`), []);
  const pipeline = useLoad(() => api('/admin/projections'), []);
  const dead = useLoad(() => api('/admin/dead-letters'), []);
  return html`<div>
    <h1>Dashboard</h1>
    ${sales.loading && html`<${Loading} />`}
    <${ErrorNote} error=${sales.error} />
    ${sales.data &&
    html`<${RevenueChart} days=${sales.data.revenue_by_day} />
      <div class="cols">
        <section aria-labelledby="by-status">
          <h2 id="by-status">Orders by status</h2>
          <dl class="kv">${Object.entries(sales.data.orders_by_status).map(([s, n]) => html`<dt>${statusWords(s)}</dt><dd>${n}</dd>`)}</dl>
        </section>
        <section aria-labelledby="top">
          <h2 id="top">Top products</h2>
          <ol>${sales.data.top_products.map((p) => html`<li>${p.sku}: ${p.quantity} sold, ${money({ amount: p.revenue, currency: p.currency })}</li>`)}</ol>
        </section>
        <section aria-labelledby="conversion">
          <h2 id="conversion">Cart conversion</h2>
          <${Conversion} days=${sales.data.carts_by_day} />
        </section>
      </div>`}
    <section aria-labelledby="pipeline">
      <h2 id="pipeline">Pipeline</h2>
      <${ErrorNote} error=${pipeline.error} />
      ${pipeline.data &&
      html`<table class="lines">
        <thead><tr><th scope="col">Reader</th><th scope="col">State</th><th scope="col">Lag (events)</th><th scope="col">Lag (ms)</th></tr></thead>
        <tbody>${pipeline.data.map((r) => html`<tr><td>${r.name}</td><td>${r.state}</td><td>${r.lag_events ?? '–'}</td><td>${r.lag_ms ?? '–'}</td></tr>`)}</tbody>
      </table>`}
      <p>Dead letters: <strong>${dead.data ? dead.data.length : '…'}</strong></p>
      <button class="secondary" onClick=${() => (pipeline.reload(), dead.reload(), sales.reload())}>Refresh</button>
    </section>
  </div>`;
}

function Conversion({ days }) {
  const created = days.reduce((n, d) => n + d.created, 0);
  const checkedOut = days.reduce((n, d) => n + d.checked_out, 0);
  const abandoned = days.reduce((n, d) => n + d.abandoned, 0);
  return html`<dl class="kv">
    <dt>Carts opened</dt><dd>${created}</dd>
    <dt>Checked out</dt><dd>${checkedOut}</dd>
    <dt>Abandoned</dt><dd>${abandoned}</dd>
    <dt>Conversion</dt><dd>${created ? `${((checkedOut / created) * 100).toFixed(1)}%` : '–'}</dd>
  </dl>`;
}

function Products() {
  const products = useLoad(() => api('/products?limit=100&sort=newest'), []);
  const create = async (v) => {
    const created = await api('/products', {
      method: 'POST',
      headers: { 'Idempotency-Key': newKey() },
      body: {
        sku: v.sku,
        name: v.name,
        description: v.description,
        category: v.category,
        price: { amount: Math.round(Number(v.price) * 100), currency: v.currency },
        attributes: {},
      },
    });
    navigate(`/admin/products/${created.id}`);
  };
  return html`<div>
    <h1>Products</h1>
    <details>
      <summary>New product</summary>
      <${Form}
        id="new-product"
        label="Create product"
        fields=${[
          { name: 'sku', label: 'SKU' },
          { name: 'name', label: 'Name' },
          { name: 'description', label: 'Description' },
          { name: 'category', label: 'Category (path, e.g. phones/android)' },
          { name: 'price', label: 'Price', type: 'number' },
          { name: 'currency', label: 'Currency', value: 'EUR' },
        ]}
        submit=${create}
      />
    </details>
    ${products.loading && html`<${Loading} />`}
    <${ErrorNote} error=${products.error} />
    ${products.data &&
    html`<table class="lines">
      <thead><tr><th scope="col">SKU</th><th scope="col">Name</th><th scope="col">Price</th><th scope="col">State</th></tr></thead>
      <tbody>
        ${products.data.items.map(
          (p) => html`<tr>
            <td class="mono">${p.sku}</td>
            <td><${Link} href=${`/admin/products/${p.id}`}>${p.name}<//></td>
            <td>${money(p.price)}</td>
            <td>${p.discontinued ? 'discontinued' : p.published ? 'published' : 'draft'}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </div>`;
}

function ProductEditor({ id }) {
  const product = useLoad(() => api(`/products/${id}`, { full: true }), [id]);
  const [note, setNote] = useState(null);
  if (product.loading && !product.data) return html`<${Loading} />`;
  if (product.error) return html`<${ErrorNote} error=${product.error} />`;
  const p = product.data.body;
  const version = p.version;
  const act = async (path, body = {}) => {
    setNote(null);
    await api(`/products/${id}/${path}`, { method: 'POST', body });
    setNote(`Done: ${path}`);
    product.reload();
  };
  const guarded = (f) => async () => {
    try {
      await f();
    } catch (e) {
      setNote(e.message);
    }
  };
  return html`<div>
    <h1>${p.name}</h1>
    <p class="muted">SKU ${p.sku} · ${p.category} · version ${version} · ${p.discontinued ? 'discontinued' : p.published ? 'published' : 'draft'}</p>
    <${Form}
      id="price"
      label="Change price"
      fields=${[{ name: 'amount', label: `Price (${p.price.currency})`, type: 'number', value: String(p.price.amount / 100) }]}
      submit=${async (v) => {
        try {
          await api(`/products/${id}/price`, {
            method: 'PUT',
            headers: { 'If-Match': String(version) },
            body: { amount: Math.round(Number(v.amount) * 100), currency: p.price.currency },
          });
          setNote('Price changed.');
          product.reload();
        } catch (e) {
          if (e instanceof Problem && e.status === 409) {
            throw new Problem(409, { detail: `Someone changed this product meanwhile (now version ${e.body.current_version ?? '?'}); reload to see it.`, code: e.code });
          }
          throw e;
        }
      }}
    />
    <div class="actions">
      ${!p.published && !p.discontinued && html`<button onClick=${guarded(() => act('publish'))}>Publish</button>`}
      ${p.published && html`<button class="secondary" onClick=${guarded(() => act('unpublish'))}>Unpublish</button>`}
      ${!p.discontinued &&
      html`<button class="danger" onClick=${guarded(async () => {
        await api(`/products/${id}`, { method: 'DELETE' });
        setNote('Discontinued.');
        product.reload();
      })}>Discontinue</button>`}
    </div>
    ${note && html`<p role="status" id="product-note">${note}</p>`}
    <h2>Stock</h2>
    <${StockForms} sku=${p.sku} />
  </div>`;
}

function StockForms({ sku }) {
  const stock = useLoad(() => api(`/stock/${encodeURIComponent(sku)}`), [sku]);
  const [note, setNote] = useState(null);
  return html`<div>
    ${stock.data && html`<p id="stock-levels">On hand ${stock.data.on_hand ?? '?'}, reserved ${stock.data.reserved ?? '?'}, available ${stock.data.available}</p>`}
    <div class="cols">
      <${Form}
        id="receipt"
        label="Receive"
        fields=${[{ name: 'quantity', label: 'Units received', type: 'number' }]}
        submit=${async (v) => {
          await api(`/stock/${encodeURIComponent(sku)}/receipts`, { method: 'POST', headers: { 'Idempotency-Key': newKey() }, body: { quantity: Number(v.quantity) } });
          setNote(`Received ${v.quantity}.`);
          stock.reload();
        }}
      />
      <${Form}
        id="adjustment"
        label="Adjust"
        fields=${[
          { name: 'quantity_delta', label: 'Change (+/−)', type: 'number' },
          { name: 'reason', label: 'Reason' },
        ]}
        submit=${async (v) => {
          await api(`/stock/${encodeURIComponent(sku)}/adjustments`, { method: 'POST', body: { quantity_delta: Number(v.quantity_delta), reason: v.reason } });
          setNote('Adjusted.');
          stock.reload();
        }}
      />
    </div>
    ${note && html`<p role="status">${note}</p>`}
  </div>`;
}

function Stock({ query }) {
  const sku = query.get('sku') || '';
  return html`<div>
    <h1>Stock</h1>
    <form class="filters" onSubmit=${(e) => (e.preventDefault(), navigate(`/admin/stock?sku=${encodeURIComponent(new FormData(e.target).get('sku'))}`))}>
      <div class="field"><label for="stock-sku">SKU</label><input id="stock-sku" name="sku" value=${sku} /></div>
      <button type="submit">Show</button>
    </form>
    ${sku && html`<${StockForms} sku=${sku} />`}
  </div>`;
}

function Orders({ query }) {
  const status = query.get('status') || '';
  const orders = useLoad(() => api(`/admin/orders?limit=50${status ? `&status=${status}` : ''}`), [status]);
  return html`<div>
    <h1>Orders</h1>
    <form class="filters" onChange=${(e) => navigate(`/admin/orders${e.target.value ? `?status=${e.target.value}` : ''}`)}>
      <div class="field">
        <label for="status-filter">Status</label>
        <select id="status-filter" value=${status}>
          <option value="">All</option>
          ${['placed', 'stock_reserved', 'payment_authorised', 'confirmed', 'shipped', 'delivered', 'cancelled'].map(
            (s) => html`<option value=${s}>${statusWords(s)}</option>`,
          )}
        </select>
      </div>
    </form>
    ${orders.loading && html`<${Loading} />`}
    <${ErrorNote} error=${orders.error} />
    ${orders.data &&
    html`<table class="lines">
      <thead><tr><th scope="col">Placed</th><th scope="col">Order</th><th scope="col">Status</th><th scope="col">Total</th></tr></thead>
      <tbody>
        ${orders.data.items.map(
          (o) => html`<tr>
            <td>${new Date(o.placed_at).toLocaleString()}</td>
            <td><${Link} href=${`/admin/orders/${o.id}`} class="mono">${o.id.slice(0, 8)}<//></td>
            <td>${statusWords(o.status)}</td>
            <td>${money(o.total)}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </div>`;
}

function OrderDetail({ id }) {
  const order = useLoad(() => api(`/orders/${id}`), [id]);
  const saga = useLoad(() => api(`/admin/orders/${id}/saga`).catch(() => null), [id]);
  const [note, setNote] = useState(null);
  if (order.loading && !order.data) return html`<${Loading} />`;
  if (order.error) return html`<${ErrorNote} error=${order.error} />`;
  const o = order.data;
  const done = (what) => {
    setNote(what);
    setTimeout(order.reload, 300);
  };
  return html`<div>
    <h1>Order <span class="mono">${o.id.slice(0, 8)}</span></h1>
    <p>Status: <strong id="admin-order-status">${statusWords(o.status)}</strong>${o.cancel_reason && ` (${reasonWords(o.cancel_reason)})`} · ${money(o.total)} · payment ${o.payment_status || '–'}</p>
    ${saga.data && html`<p class="muted">Saga: ${saga.data.step}${saga.data.attempts ? `, ${saga.data.attempts} attempts` : ''}</p>`}
    ${o.status === 'confirmed' &&
    html`<${Form}
      id="ship"
      label="Ship"
      fields=${[
        { name: 'carrier', label: 'Carrier', value: 'DHL' },
        { name: 'tracking_number', label: 'Tracking number' },
      ]}
      submit=${async (v) => {
        await api(`/orders/${id}/ship`, { method: 'POST', body: v });
        done('Shipped.');
      }}
    />`}
    ${o.status === 'shipped' &&
    html`<button onClick=${async () => (await api(`/orders/${id}/deliver`, { method: 'POST', body: {} }), done('Delivered.'))}>Mark delivered</button>`}
    ${['placed', 'stock_reserved', 'payment_authorised', 'confirmed'].includes(o.status) &&
    html`<button class="danger" onClick=${async () => (await api(`/orders/${id}/cancel`, { method: 'POST', body: {} }), done('Cancel asked.'))}>Cancel order</button>`}
    ${o.payment_status === 'captured' &&
    html`<${Form}
      id="refund"
      label="Refund"
      fields=${[{ name: 'amount', label: `Amount (${o.total.currency})`, type: 'number' }]}
      submit=${async (v) => {
        await api(`/payments/${id}/refunds`, { method: 'POST', headers: { 'Idempotency-Key': newKey() }, body: { amount: { amount: Math.round(Number(v.amount) * 100), currency: o.total.currency } } });
        done('Refund asked.');
      }}
    />`}
    ${note && html`<p role="status">${note}</p>`}
    <h2>Timeline</h2>
    <ol class="timeline">${(o.timeline || []).map((t) => html`<li><time>${new Date(t.at).toLocaleString()}</time> ${t.source}: ${t.event.replaceAll('_', ' ')}</li>`)}</ol>
  </div>`;
}
