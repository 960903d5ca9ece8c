// The admin console. The API decides who may do what; these pages only follow it.
import { html, useState, useEffect } from './vendor/preact-htm.module.js';
import { api, money, isAdmin, newKey, Problem } from './api.js';
import { Link, navigate, useLoad, Loading, ErrorNote, Form, statusWords, reasonWords } from './ui.js';

const SECTIONS = [
  ['dashboard', 'Dashboard'],
  ['products', 'Products'],
  ['stock', 'Stock'],
  ['orders', 'Orders'],
  ['users', 'Users'],
  ['codes', 'Discount codes'],
  ['webhooks', 'Webhooks'],
  ['dead-letters', 'Dead letters'],
  ['mail', 'Deliveries'],
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
    users: () => html`<${Users} />`,
    codes: () => html`<${Codes} />`,
    webhooks: () => (rest[0] ? html`<${Deliveries} id=${rest[0]} />` : html`<${Webhooks} />`),
    'dead-letters': () => html`<${DeadLetters} />`,
    mail: () => html`<${MailLog} />`,
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
  // Every day of the range, those without sales at 0.
  const sold = new Map(days.filter((d) => d.currency === currency).map((d) => [d.day, d]));
  const rows = Array.from({ length: 30 }, (_, i) => sold.get(day(i - 29)) || { day: day(i - 29), revenue: 0, orders: 0 });
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
          ${i % 5 === 4 && html`<text x=${i * bar + bar / 2} y=${h + 14} text-anchor="middle" class="axis">${d.day.slice(5)}</text>`}
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
  // The pipeline's status, live: every five seconds while the dashboard is open.
  useEffect(() => {
    const timer = setInterval(() => {
      pipeline.reload();
      dead.reload();
    }, 5_000);
    return () => clearInterval(timer);
  }, []);
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
        attributes: v.featured ? { featured: 'true' } : {},
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
          { name: 'featured', label: 'Featured on the home page', type: 'checkbox', value: false },
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

function ProductEditor({ id: raw }) {
  const id = encodeURIComponent(raw);
  const product = useLoad(() => api(`/products/${id}`, { full: true }), [raw]);
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
    <details>
      <summary>Edit details</summary>
      <${Form}
        id="details"
        label="Save details"
        fields=${[
          { name: 'name', label: 'Name', value: p.name },
          { name: 'description', label: 'Description', value: p.description },
          { name: 'category', label: 'Category', value: p.category },
        ]}
        submit=${async (v) => {
          await api(`/products/${id}`, { method: 'PATCH', headers: { 'If-Match': String(version) }, body: v });
          setNote('Details saved.');
          product.reload();
        }}
      />
    </details>
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
    <${LowStock} />
  </div>`;
}

function LowStock() {
  const low = useLoad(() => api('/admin/stock/low?below=5&limit=50'), []);
  return html`<section aria-labelledby="low-stock">
    <h2 id="low-stock">Low stock (5 or fewer available)</h2>
    <${ErrorNote} error=${low.error} />
    ${low.data &&
    (low.data.length === 0
      ? html`<p class="muted">Nothing runs low.</p>`
      : html`<table class="lines">
          <thead><tr><th scope="col">SKU</th><th scope="col">Available</th><th scope="col">On hand</th><th scope="col">Reserved</th></tr></thead>
          <tbody>${low.data.map((r) => html`<tr><td><${Link} href=${`/admin/stock?sku=${encodeURIComponent(r.sku)}`}>${r.sku}<//></td><td>${r.available}</td><td>${r.on_hand}</td><td>${r.reserved}</td></tr>`)}</tbody>
        </table>`)}
  </section>`;
}

function Orders({ query }) {
  const status = query.get('status') || '';
  const from = query.get('from') || '';
  const to = query.get('to') || '';
  const filter = new URLSearchParams({ status, from, to });
  for (const [k, v] of [...filter.entries()]) if (!v) filter.delete(k);
  const orders = useLoad(() => api(`/admin/orders?limit=50&${filter}`), [status, from, to]);
  const apply = (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const q = new URLSearchParams();
    for (const key of ['status', 'from', 'to']) if (form.get(key)) q.set(key, form.get(key));
    navigate(`/admin/orders?${q}`);
  };
  return html`<div>
    <h1>Orders</h1>
    <form class="filters" onSubmit=${apply} aria-label="Filter orders">
      <div class="field"><label for="from-filter">Placed from</label><input id="from-filter" name="from" type="date" value=${from} /></div>
      <div class="field"><label for="to-filter">Placed to</label><input id="to-filter" name="to" type="date" value=${to} /></div>
      <div class="field">
        <label for="status-filter">Status</label>
        <select id="status-filter" name="status" value=${status}>
          <option value="">All</option>
          ${['placed', 'stock_reserved', 'payment_authorised', 'confirmed', 'shipped', 'delivered', 'cancelled'].map(
            (s) => html`<option value=${s}>${statusWords(s)}</option>`,
          )}
        </select>
      </div>
      <button type="submit">Filter</button>
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
  const oid = encodeURIComponent(id);
  const order = useLoad(() => api(`/orders/${oid}`), [id]);
  const saga = useLoad(() => api(`/admin/orders/${oid}/saga`).catch(() => null), [id]);
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
        await api(`/orders/${oid}/ship`, { method: 'POST', body: v });
        done('Shipped.');
      }}
    />`}
    ${o.status === 'shipped' &&
    html`<${Act} label="Mark delivered" action=${async () => (await api(`/orders/${oid}/deliver`, { method: 'POST', body: {} }), done('Delivered.'))} />`}
    ${['placed', 'stock_reserved', 'payment_authorised', 'confirmed'].includes(o.status) &&
    html`<${Act} label="Cancel order" danger action=${async () => (await api(`/orders/${oid}/cancel`, { method: 'POST', body: {} }), done('Cancel asked.'))} />`}
    ${o.payment_status === 'captured' &&
    html`<${Form}
      id="refund"
      label="Refund"
      fields=${[{ name: 'amount', label: `Amount (${o.total.currency})`, type: 'number' }]}
      submit=${async (v) => {
        await api(`/payments/${oid}/refunds`, { method: 'POST', headers: { 'Idempotency-Key': newKey() }, body: { amount: { amount: Math.round(Number(v.amount) * 100), currency: o.total.currency } } });
        done('Refund asked.');
      }}
    />`}
    ${note && html`<p role="status">${note}</p>`}
    <h2>Timeline</h2>
    <ol class="timeline">${(o.timeline || []).map((t) => html`<li><time>${new Date(t.at).toLocaleString()}</time> ${t.source}: ${t.event.replaceAll('_', ' ')}</li>`)}</ol>
  </div>`;
}

/** A button that runs `action`, shows its problem, and reloads. */
function Act({ label, action, danger, what }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<span><button class=${danger ? 'danger' : 'secondary'} disabled=${busy} onClick=${run} aria-label=${what ? `${label}: ${what}` : undefined}>${label}</button>${error && html` <span class="error" role="alert">${error.message}</span>`}</span>`;
}

function Users() {
  const [pages, setPages] = useState({ items: [], cursor: null, loaded: false });
  const [error, setError] = useState(null);
  const load = async (cursor) => {
    try {
      const page = await api(`/admin/users?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      setPages((old) => ({ items: cursor ? [...old.items, ...page.items] : page.items, cursor: page.next_cursor || null, loaded: true }));
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load(null);
  }, []);
  const setRoles = async (u, admin) => {
    await api(`/users/${u.id}/roles`, { method: 'PUT', body: { roles: admin ? ['customer', 'admin'] : ['customer'] } });
    await load(null);
  };
  return html`<div>
    <h1>Users</h1>
    <${ErrorNote} error=${error} />
    ${!pages.loaded && html`<${Loading} />`}
    <table class="lines">
      <thead><tr><th scope="col">Name</th><th scope="col">E-mail</th><th scope="col">Roles</th><th scope="col">State</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${pages.items.map(
          (u) => html`<tr>
            <td>${u.name}</td>
            <td>${u.email}</td>
            <td>${u.roles.join(', ')}</td>
            <td>${u.active ? 'active' : 'deactivated'}</td>
            <td>
              ${u.active &&
              (u.roles.includes('admin')
                ? html`<${Act} label="Remove admin" what=${u.email} action=${() => setRoles(u, false)} />`
                : html`<${Act} label="Make admin" what=${u.email} action=${() => setRoles(u, true)} />`)}
              ${u.active && html` <${Act} label="Deactivate" what=${u.email} danger action=${async () => (await api(`/users/${u.id}/deactivate`, { method: 'POST', body: {} }), load(null))} />`}
            </td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${pages.cursor && html`<button class="secondary" onClick=${() => load(pages.cursor)}>More users</button>`}
  </div>`;
}

function Codes() {
  const codes = useLoad(() => api('/promotions'), []);
  const create = async (v) => {
    const body = { code: v.code, kind: v.kind };
    if (v.kind === 'percentage') body.percentage_bp = Math.round(Number(v.value) * 100);
    else body.amount = { amount: Math.round(Number(v.value) * 100), currency: v.currency };
    if (v.usage_limit) body.usage_limit = Number(v.usage_limit);
    await api('/promotions', { method: 'POST', body });
    codes.reload();
  };
  return html`<div>
    <h1>Discount codes</h1>
    <details>
      <summary>New code</summary>
      <${Form}
        id="new-code"
        label="Create code"
        fields=${[
          { name: 'code', label: 'Code' },
          { name: 'kind', label: 'Kind', type: 'select', options: [['percentage', 'Percentage'], ['fixed', 'Fixed amount']], value: 'percentage' },
          { name: 'value', label: 'Percent or amount', type: 'number' },
          { name: 'currency', label: 'Currency (fixed amounts)', value: 'EUR' },
          { name: 'usage_limit', label: 'Uses at most (empty: no limit)', type: 'number' },
        ]}
        submit=${create}
      />
    </details>
    <${ErrorNote} error=${codes.error} />
    ${codes.loading && html`<${Loading} />`}
    ${codes.data &&
    html`<table class="lines">
      <thead><tr><th scope="col">Code</th><th scope="col">Discount</th><th scope="col">Uses</th><th scope="col">State</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${codes.data.map(
          (p) => html`<tr>
            <td class="mono">${p.code}</td>
            <td>${p.kind === 'percentage' ? `${(p.percentage_bp / 100).toFixed(2)}%` : money(p.amount)}</td>
            <td>${p.uses}${p.usage_limit ? ` of ${p.usage_limit}` : ''}</td>
            <td>${p.active ? 'active' : 'inactive'}</td>
            <td>${p.active && html`<${Act} label="Deactivate" what=${p.code} danger action=${async () => (await api(`/promotions/${encodeURIComponent(p.code)}/deactivate`, { method: 'POST', body: {} }), codes.reload())} />`}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </div>`;
}

function Webhooks() {
  const hooks = useLoad(() => api('/admin/webhooks'), []);
  const [secret, setSecret] = useState(null);
  const create = async (v) => {
    const created = await api('/admin/webhooks', { method: 'POST', body: { url: v.url, event_types: v.event_types.split(',').map((t) => t.trim()).filter(Boolean) } });
    setSecret(created);
    hooks.reload();
  };
  return html`<div>
    <h1>Webhooks</h1>
    ${secret && html`<p class="notice" role="status">Signing secret of <span class="mono">${secret.id.slice(0, 8)}</span> (shown once): <code>${secret.secret}</code></p>`}
    <details>
      <summary>New endpoint</summary>
      <${Form}
        id="new-webhook"
        label="Register endpoint"
        fields=${[
          { name: 'url', label: 'URL (public https://)', type: 'url' },
          { name: 'event_types', label: 'Event types (comma-separated: order.confirmed, order.*, *)', value: '*' },
        ]}
        submit=${create}
      />
    </details>
    <${ErrorNote} error=${hooks.error} />
    ${hooks.data &&
    html`<table class="lines">
      <thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${hooks.data.map(
          (h) => html`<tr>
            <td><${Link} href=${`/admin/webhooks/${h.id}`}>${h.url}<//></td>
            <td>${h.event_types.join(', ')}</td>
            <td>
              <${Act} label="Rotate secret" what=${h.url} action=${async () => setSecret(await api(`/admin/webhooks/${h.id}/rotate-secret`, { method: 'POST', body: {} }))} />
              <${Act} label="Delete" what=${h.url} danger action=${async () => (await api(`/admin/webhooks/${h.id}`, { method: 'DELETE' }), hooks.reload())} />
            </td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </div>`;
}

function Deliveries({ id: raw }) {
  const id = encodeURIComponent(raw);
  const deliveries = useLoad(() => api(`/admin/webhooks/${id}/deliveries`), [raw]);
  return html`<div>
    <h1>Deliveries</h1>
    <p><${Link} href="/admin/webhooks">All endpoints<//></p>
    <${ErrorNote} error=${deliveries.error} />
    ${deliveries.data &&
    html`<table class="lines">
      <thead><tr><th scope="col">Event</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${deliveries.data.map(
          (d) => html`<tr>
            <td>${d.event_type}</td>
            <td>${d.status}</td>
            <td>${d.attempts}</td>
            <td>${d.last_error || ''}</td>
            <td><${Act} label="Redeliver" what=${`${d.event_type} ${d.id.slice(0, 8)}`} action=${async () => (await api(`/admin/webhooks/${id}/deliveries/${d.id}/redeliver`, { method: 'POST', body: {} }), deliveries.reload())} /></td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </div>`;
}

function DeadLetters() {
  const dead = useLoad(() => api('/admin/dead-letters'), []);
  return html`<div>
    <h1>Dead letters</h1>
    <${ErrorNote} error=${dead.error} />
    ${dead.data && dead.data.length === 0 && html`<p class="muted">None: every projection applied every event.</p>`}
    ${dead.data &&
    dead.data.length > 0 &&
    html`<table class="lines">
      <thead><tr><th scope="col">Projection</th><th scope="col">Aggregate</th><th scope="col">Position</th><th scope="col">Error</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${dead.data.map(
          (d) => html`<tr>
            <td>${d.projection}</td>
            <td class="mono">${d.aggregate_id}</td>
            <td>${d.position}</td>
            <td>${d.error}</td>
            <td><${Act} label="Retry" what=${`${d.projection} ${d.aggregate_id}`} action=${async () => (await api(`/admin/dead-letters/${d.id}/retry`, { method: 'POST', body: {} }), dead.reload())} /></td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </div>`;
}

function MailLog() {
  const [channel, setChannel] = useState('');
  const list = useLoad(() => api(`/admin/deliveries${channel ? `?channel=${channel}` : ''}`), [channel]);
  return html`<div>
    <h1>Deliveries</h1>
    <form class="filters" onSubmit=${(e) => e.preventDefault()} aria-label="Filter deliveries">
      <div class="field">
        <label for="channel-filter">Channel</label>
        <select id="channel-filter" name="channel" value=${channel} onChange=${(e) => setChannel(e.target.value)}>
          <option value="">All</option>
          <option value="email">E-mail</option>
          <option value="sms">SMS</option>
          <option value="push">Push</option>
          <option value="webhook">Webhook</option>
        </select>
      </div>
    </form>
    <${ErrorNote} error=${list.error} />
    ${list.data &&
    html`<table class="lines">
      <thead><tr><th scope="col">Channel</th><th scope="col">To</th><th scope="col">Template</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${list.data.map(
          (d) => html`<tr>
            <td>${d.channel}</td>
            <td>${d.recipient}</td>
            <td>${d.template}</td>
            <td>${d.status}</td>
            <td>${d.attempts}</td>
            <td>${d.last_error || ''}</td>
            <td>${(d.status === 'failed' || d.status === 'dead') &&
            html`<${Act} label="Redeliver" what=${`${d.channel} ${d.template}`} action=${async () => (await api(`/admin/deliveries/${encodeURIComponent(d.id)}/redeliver`, { method: 'POST', body: {} }), list.reload())} />`}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </div>`;
}
