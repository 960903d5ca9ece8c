// The storefront: every screen from /api/v1 answers.
import { html, useState, useEffect, useRef } from './vendor/preact-htm.module.js';
import {
  api,
  money,
  currentUser,
  guestCart,
  setGuestCart,
  rememberProduct,
  knownProducts,
  newKey,
  stream,
  signIn,
  register,
  Problem,
} from './api.js';
import { Link, navigate, safeNext, useLoad, Loading, ErrorNote, Form, statusWords, reasonWords } from './ui.js';

const PAGE = 12;

function ProductCard({ product }) {
  return html`<li class="card">
    <${Link} href=${`/p/${product.id}`}>
      <span class="card-name">${product.name}</span>
    <//>
    <span class="muted">${product.category}</span>
    <span class="price">${money(product.price)}</span>
  </li>`;
}

function CategoryTree({ nodes, current }) {
  if (!nodes || nodes.length === 0) return null;
  return html`<ul class="tree">
    ${nodes.map(
      (c) => html`<li>
        <${Link} href=${`/c/${encodeURIComponent(c.path)}`} aria-current=${current === c.path ? 'page' : undefined}>${c.name}<//>
        <span class="muted"> (${c.count})</span>
        <${CategoryTree} nodes=${c.children} current=${current} />
      </li>`,
    )}
  </ul>`;
}

export function Home() {
  const featured = useLoad(() => api(`/products?featured=true&limit=8`), []);
  const latest = useLoad(() => api(`/products?sort=newest&limit=${PAGE}`), []);
  const categories = useLoad(() => api('/categories'), []);
  return html`<div class="with-side">
    <nav class="side" aria-label="Categories">
      <h2>Categories</h2>
      ${categories.loading ? html`<${Loading} />` : html`<${CategoryTree} nodes=${categories.data} />`}
      <${ErrorNote} error=${categories.error} />
    </nav>
    <div>
      <h1>Welcome to shop</h1>
      <section aria-labelledby="featured">
        <h2 id="featured">Featured</h2>
        ${featured.loading
          ? html`<${Loading} />`
          : featured.data && featured.data.items.length
            ? html`<ul class="grid">${featured.data.items.map((p) => html`<${ProductCard} key=${p.id} product=${p} />`)}</ul>`
            : html`<p class="muted">Nothing featured yet.</p>`}
      </section>
      <section aria-labelledby="latest">
        <h2 id="latest">New in</h2>
        ${latest.loading
          ? html`<${Loading} />`
          : html`<ul class="grid">${(latest.data ? latest.data.items : []).map((p) => html`<${ProductCard} key=${p.id} product=${p} />`)}</ul>`}
        <${ErrorNote} error=${latest.error} />
      </section>
    </div>
  </div>`;
}

function priceParam(value) {
  const n = Number(value);
  return value !== '' && Number.isFinite(n) && n >= 0 ? String(Math.round(n * 100)) : null;
}

export function Listing({ category, query }) {
  const sort = query.get('sort') || 'name';
  const min = query.get('min') || '';
  const max = query.get('max') || '';
  const [pages, setPages] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);
  const params = () => {
    const p = new URLSearchParams({ category, sort, limit: String(PAGE) });
    if (priceParam(min)) p.set('min_price', priceParam(min));
    if (priceParam(max)) p.set('max_price', priceParam(max));
    return p;
  };
  const load = async (after) => {
    const p = params();
    if (after) p.set('cursor', after);
    try {
      const page = await api(`/products?${p}`);
      setPages((old) => (after ? [...old, ...page.items] : page.items));
      setCursor(page.next_cursor || null);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    setPages([]);
    load(null);
  }, [category, sort, min, max]);
  const filter = (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const q = new URLSearchParams();
    for (const key of ['sort', 'min', 'max']) if (form.get(key)) q.set(key, form.get(key));
    navigate(`/c/${encodeURIComponent(category)}?${q}`);
  };
  return html`<div>
    <h1>${category}</h1>
    <form class="filters" onSubmit=${filter} aria-label="Filter products">
      <div class="field"><label for="min">Min price</label><input id="min" name="min" type="number" min="0" step="0.01" value=${min} /></div>
      <div class="field"><label for="max">Max price</label><input id="max" name="max" type="number" min="0" step="0.01" value=${max} /></div>
      <div class="field">
        <label for="sort">Sort by</label>
        <select id="sort" name="sort" value=${sort}>
          <option value="name">Name</option>
          <option value="price">Price</option>
          <option value="newest">Newest</option>
        </select>
      </div>
      <button type="submit">Apply</button>
    </form>
    <${ErrorNote} error=${error} />
    <ul class="grid">${pages.map((p) => html`<${ProductCard} key=${p.id} product=${p} />`)}</ul>
    ${pages.length === 0 && !error && html`<p class="muted">No products here.</p>`}
    ${cursor && html`<button class="secondary" onClick=${() => load(cursor)}>More products</button>`}
  </div>`;
}

export function Search({ query }) {
  const q = query.get('q') || '';
  const category = query.get('category') || '';
  const min = query.get('min_price') || '';
  const max = query.get('max_price') || '';
  const results = useLoad(() => {
    if (!q.trim()) return Promise.resolve(null);
    const p = new URLSearchParams({ q, limit: '24' });
    if (category) p.set('category', category);
    if (min) p.set('min_price', min);
    if (max) p.set('max_price', max);
    return api(`/products/search?${p}`);
  }, [q, category, min, max]);
  const facet = (changes) => {
    const p = new URLSearchParams({ q, category, min_price: min, max_price: max, ...changes });
    for (const [k, v] of [...p.entries()]) if (!v) p.delete(k);
    navigate(`/search?${p}`, { replace: true });
  };
  const amount = (minor) => (minor / 100).toFixed(2);
  const data = results.data;
  return html`<div class="with-side">
    <aside class="side" aria-label="Refine">
      ${data &&
      html`<h2>Categories</h2>
        <ul class="tree">
          ${category && html`<li><button class="link" onClick=${() => facet({ category: '' })}>All categories</button></li>`}
          ${data.facets.categories.map(
            (c) => html`<li><button class="link" onClick=${() => facet({ category: c.category })}>${c.category}</button> <span class="muted">(${c.count})</span></li>`,
          )}
        </ul>
        <h2>Prices</h2>
        <ul class="tree">
          ${(min || max) && html`<li><button class="link" onClick=${() => facet({ min_price: '', max_price: '' })}>Any price</button></li>`}
          ${data.facets.price
            .filter((b) => b.count > 0)
            .map(
              (b) => html`<li>
                <button class="link" onClick=${() => facet({ min_price: String(b.min), max_price: b.max ? String(b.max - 1) : '' })}>
                  ${b.max ? `${amount(b.min)} to ${amount(b.max)}` : `${amount(b.min)} and more`}
                </button>
                <span class="muted"> (${b.count})</span>
              </li>`,
            )}
        </ul>`}
    </aside>
    <div>
      <h1>Search${q ? `: ${q}` : ''}</h1>
      ${results.loading && html`<${Loading} what="Searching" />`}
      <${ErrorNote} error=${results.error} />
      ${data && html`<p class="muted" role="status">${data.total} found</p>`}
      ${data && html`<ul class="grid">${data.items.map((p) => html`<${ProductCard} key=${p.id} product=${p} />`)}</ul>`}
    </div>
  </div>`;
}

/** Search as you type: the header's box. */
export function SearchBox() {
  const [q, setQ] = useState(() => new URLSearchParams(window.location.search).get('q') || '');
  const timer = useRef(null);
  const go = (value, replace) => {
    if (value.trim()) navigate(`/search?${new URLSearchParams({ q: value })}`, { replace });
  };
  const input = (e) => {
    const value = e.target.value;
    setQ(value);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => go(value, window.location.pathname === '/search'), 200);
  };
  return html`<form role="search" class="search" onSubmit=${(e) => (e.preventDefault(), go(q, false))}>
    <label for="q" class="visually-hidden">Search products</label>
    <input id="q" type="search" placeholder="Search products" value=${q} onInput=${input} autocomplete="off" />
  </form>`;
}

// The cart: the guest's (token in local storage) or the signed-in customer's.
async function openCart() {
  if (currentUser()) {
    try {
      return await api('/carts/mine');
    } catch (e) {
      if (!(e instanceof Problem) || e.status !== 404) throw e;
      await api('/carts', { method: 'POST', body: {} });
      return api('/carts/mine');
    }
  }
  const guest = guestCart();
  if (guest) {
    try {
      return await api(`/carts/${encodeURIComponent(guest.id)}`);
    } catch (e) {
      if (!(e instanceof Problem) || e.status !== 404) throw e;
      setGuestCart(null);
    }
  }
  const created = await api('/carts', { method: 'POST', body: {} });
  setGuestCart({ id: created.id, token: created.token });
  return api(`/carts/${encodeURIComponent(created.id)}`);
}

async function currentCart() {
  const cart = await openCart();
  if (cart.status !== 'open') {
    if (!currentUser()) setGuestCart(null);
    return openCart();
  }
  return cart;
}

export function ProductPage({ id }) {
  const product = useLoad(() => api(`/products/${encodeURIComponent(id)}`), [id]);
  const stock = useLoad(() => (product.data ? api(`/stock/${encodeURIComponent(product.data.sku)}`) : Promise.resolve(null)), [product.data]);
  const [added, setAdded] = useState(null);
  if (product.loading) return html`<${Loading} />`;
  if (product.error) return html`<${ErrorNote} error=${product.error} />`;
  const p = product.data;
  rememberProduct(p);
  const available = stock.data ? stock.data.available : null;
  const add = async ({ quantity }) => {
    const cart = await currentCart();
    await api(`/carts/${cart.id}/lines`, { method: 'POST', body: { sku: p.sku, quantity: Number(quantity) } });
    setAdded(Number(quantity));
  };
  return html`<article class="product">
    <h1>${p.name}</h1>
    <p class="muted">${p.category} · SKU ${p.sku}</p>
    <p class="price big">${money(p.price)}</p>
    <p id="availability">${available === null ? '' : available > 0 ? `${available} in stock` : 'Out of stock'}</p>
    <p>${p.description}</p>
    ${!p.published && html`<p class="notice">Not published</p>`}
    <${Form}
      id="add"
      label="Add to cart"
      busyLabel="Adding…"
      fields=${[{ name: 'quantity', label: 'Quantity', type: 'number', value: '1' }]}
      submit=${add}
    />
    ${added && html`<p class="success" role="status">Added ${added} to your cart. <${Link} href="/cart">View cart<//></p>`}
  </article>`;
}

function problemFor(cart, sku) {
  return (cart.problems || []).filter((p) => p.sku === sku);
}

function ProblemText({ problem }) {
  switch (problem.kind) {
    case 'price_changed':
      return html`<span class="problem" role="alert">Price changed from ${money(problem.previous_unit_price)} to ${money(problem.unit_price)}</span>`;
    case 'out_of_stock':
      return html`<span class="problem" role="alert">Only ${problem.available} available</span>`;
    case 'product_unavailable':
      return html`<span class="problem" role="alert">No longer for sale: remove it to check out</span>`;
    case 'discount_removed':
      return html`<span class="problem" role="alert">Code ${problem.code} was removed (${problem.reason.replaceAll('_', ' ')})</span>`;
    default:
      return null;
  }
}

function Totals({ totals, discount }) {
  if (!totals) return null;
  return html`<dl class="totals">
    <dt>Subtotal</dt><dd>${money(totals.subtotal)}</dd>
    ${discount && html`<dt>Discount (${discount.code})</dt><dd>−${money(totals.discount)}</dd>`}
    <dt>Tax</dt><dd>${money(totals.tax)}</dd>
    <dt>Shipping</dt><dd>${money(totals.shipping)}</dd>
    <dt class="total">Total</dt><dd class="total" id="cart-total">${money(totals.total)}</dd>
  </dl>`;
}

function CartLines({ cart, onChange, onError }) {
  const names = knownProducts();
  const setQuantity = async (sku, quantity) => {
    try {
      onChange(await api(`/carts/${cart.id}/lines/${encodeURIComponent(sku)}`, { method: 'PUT', body: { quantity } }));
    } catch (e) {
      // Refused (not that many in stock, say): say why, and show the cart as it is.
      onError(e);
    }
  };
  return html`<table class="lines cart-lines">
    <caption class="visually-hidden">Cart lines</caption>
    <thead><tr><th scope="col">Product</th><th scope="col">Unit price</th><th scope="col">Quantity</th><th scope="col">Total</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>
      ${cart.lines.map((line) => {
        const known = names[line.sku] ? { ...names[line.sku], name: line.name || names[line.sku].name } : line.name ? { name: line.name } : null;
        return html`<tr key=${line.sku} data-sku=${line.sku}>
          <td>
            ${known && known.id ? html`<${Link} href=${`/p/${known.id}`}>${known.name}<//>` : known ? known.name : line.sku}
            ${problemFor(cart, line.sku).map((p) => html`<div><${ProblemText} problem=${p} /></div>`)}
          </td>
          <td>${money(line.unit_price)}${line.previous_unit_price && html` <s class="muted">${money(line.previous_unit_price)}</s>`}</td>
          <td>
            <label class="visually-hidden" for=${`qty-${line.sku}`}>Quantity of ${known ? known.name : line.sku}</label>
            <input
              id=${`qty-${line.sku}`}
              class="qty"
              type="number"
              min="0"
              max="1000"
              value=${line.quantity}
              onChange=${(e) => setQuantity(line.sku, Number(e.target.value))}
            />
          </td>
          <td>${money(line.line_total)}</td>
          <td><button class="link" aria-label=${`Remove ${known ? known.name : line.sku}`} onClick=${() => setQuantity(line.sku, 0)}>Remove</button></td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

export function CartPage() {
  const cart = useLoad(currentCart, [currentUser()]);
  const [error, setError] = useState(null);
  if (cart.loading && !cart.data) return html`<${Loading} />`;
  if (cart.error) return html`<${ErrorNote} error=${cart.error} />`;
  const c = cart.data;
  const update = (fresh) => {
    setError(null);
    cart.set(fresh);
  };
  const guarded = (f) => async (...args) => {
    try {
      await f(...args);
    } catch (e) {
      setError(e);
    }
  };
  const apply = async ({ code }) => update(await api(`/carts/${c.id}/discount`, { method: 'POST', body: { code } }));
  const removeCode = guarded(async () => update(await api(`/carts/${c.id}/discount`, { method: 'DELETE' })));
  const cartProblems = (c.problems || []).filter((p) => !p.sku);
  return html`<div>
    <h1>Your cart</h1>
    <${ErrorNote} error=${error} />
    ${c.lines.length === 0
      ? html`<p>Your cart is empty. <${Link} href="/">Browse the shop<//></p>`
      : html`<${CartLines} cart=${c} onChange=${update} onError=${(e) => (setError(e), cart.reload())} />
          ${cartProblems.map((p) => html`<p><${ProblemText} problem=${p} /></p>`)}
          ${c.discount
            ? html`<p>Code <strong>${c.discount.code}</strong> applied. <button class="link" onClick=${removeCode}>Remove code</button></p>`
            : html`<${Form} id="discount" label="Apply code" fields=${[{ name: 'code', label: 'Discount code' }]} submit=${apply} />`}
          <${Totals} totals=${c.totals} discount=${c.discount} />
          <button onClick=${() => navigate(currentUser() ? '/checkout' : '/signin?next=/checkout')}>Check out</button>`}
  </div>`;
}

const TOKENS = [
  ['tok_approve', 'Approve (tok_approve)'],
  ['tok_decline', 'Decline (tok_decline)'],
  ['tok_capture_fail', 'Approve, then fail to capture (tok_capture_fail)'],
  ['tok_timeout', 'Time out (tok_timeout)'],
];

export function Checkout() {
  const cart = useLoad(currentCart, []);
  const [key] = useState(newKey);
  const [changed, setChanged] = useState(false);
  const [lineError, setLineError] = useState(null);
  if (!currentUser()) {
    navigate('/signin?next=/checkout', { replace: true });
    return null;
  }
  if (cart.loading && !cart.data) return html`<${Loading} />`;
  if (cart.error) return html`<${ErrorNote} error=${cart.error} />`;
  const c = cart.data;
  if (c.lines.length === 0) return html`<p>Your cart is empty. <${Link} href="/">Browse the shop<//></p>`;
  const submit = async (v) => {
    const body = {
      shipping_address: {
        name: v.name,
        line1: v.line1,
        line2: v.line2 || undefined,
        city: v.city,
        region: v.region || undefined,
        postal_code: v.postal_code,
        country: v.country,
      },
      payment_method: v.payment_method,
    };
    try {
      const placed = await api(`/carts/${c.id}/checkout`, {
        method: 'POST',
        body,
        headers: { 'Idempotency-Key': key, 'If-Match': String(c.version) },
      });
      navigate(`/orders/${placed.order_id || placed.id}`);
    } catch (e) {
      if (e instanceof Problem && e.code === 'cart_changed') {
        // The fresh cart came with the problem: show what moved before anything is ordered.
        setChanged(true);
        cart.set(e.body.cart || (await api(`/carts/${c.id}`)));
        return;
      }
      throw e;
    }
  };
  return html`<div class="checkout">
    <h1>Checkout</h1>
    ${changed && html`<p class="notice" role="alert" id="cart-changed">Your cart changed since you last saw it. Check the prices below, then place the order again.</p>`}
    <${ErrorNote} error=${lineError} />
    <${CartLines} cart=${c} onChange=${(fresh) => (setLineError(null), cart.set(fresh))} onError=${(e) => (setLineError(e), cart.reload())} />
    <${Totals} totals=${c.totals} discount=${c.discount} />
    <${Form}
      id="checkout"
      label="Place order"
      busyLabel="Placing order…"
      fields=${[
        { name: 'name', label: 'Full name', autocomplete: 'name', value: currentUser().name || '' },
        { name: 'line1', label: 'Address', autocomplete: 'address-line1' },
        { name: 'line2', label: 'Address line 2 (optional)', autocomplete: 'address-line2' },
        { name: 'city', label: 'City', autocomplete: 'address-level2' },
        { name: 'region', label: 'State or region (optional)', autocomplete: 'address-level1' },
        { name: 'postal_code', label: 'Postal code', autocomplete: 'postal-code' },
        { name: 'country', label: 'Country (two letters)', autocomplete: 'country', value: 'DE' },
        { name: 'payment_method', label: 'Payment', type: 'select', options: TOKENS, value: 'tok_approve' },
      ]}
      submit=${submit}
    >
      <aside class="sandbox" aria-label="Payment sandbox">
        <strong>Sandbox payments.</strong> No money moves: <code>tok_approve</code> is approved and captured,
        <code>tok_decline</code> is declined, <code>tok_capture_fail</code> is approved but its capture fails,
        <code>tok_timeout</code> never answers.
      </aside>
    <//>
  </div>`;
}

const STEPS = ['placed', 'stock_reserved', 'payment_authorised', 'confirmed', 'shipped', 'delivered'];

export function OrderPage({ id }) {
  const order = useLoad(() => api(`/orders/${encodeURIComponent(id)}`), [id]);
  const [live, setLive] = useState(null);
  const [invoiceError, setInvoiceError] = useState(null);
  useEffect(() => {
    setLive(null);
    let seen = 0;
    return stream(`/orders/${encodeURIComponent(id)}/events`, (type, data) => {
      if (data && data.status) setLive({ status: data.status, detail: data.detail, event: data.event, n: ++seen });
    });
  }, [id]);
  useEffect(() => {
    // The view catches up with each event the stream brings (cancel reason, shipment, invoice).
    if (live) order.reload();
  }, [live && live.n]);
  if (order.loading && !order.data) return html`<${Loading} />`;
  if (order.error) return html`<${ErrorNote} error=${order.error} />`;
  const o = order.data;
  const status = (live && live.status) || o.status;
  const invoice = async () => {
    try {
      const pdf = await api(`/orders/${encodeURIComponent(id)}/invoice?format=pdf`, { accept: 'application/pdf' });
      const url = URL.createObjectURL(pdf);
      const a = document.createElement('a');
      a.href = url;
      a.download = `invoice-${o.invoice_number || id}.pdf`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      setInvoiceError(e);
    }
  };
  const cancel = async () => {
    try {
      await api(`/orders/${encodeURIComponent(id)}/cancel`, { method: 'POST', body: {} });
    } catch (e) {
      setInvoiceError(e);
    }
  };
  return html`<div>
    <h1>Order <span class="mono">${o.id.slice(0, 8)}</span></h1>
    <p class="status-line">Status: <strong id="order-status" data-status=${status} aria-live="polite">${statusWords(status)}</strong></p>
    ${status === 'cancelled' && html`<p id="cancel-reason" class="notice">Cancelled because ${reasonWords(o.cancel_reason)}.</p>`}
    ${status !== 'cancelled' &&
    html`<ol class="steps" aria-label="Progress">
      ${STEPS.map((s) => html`<li class=${STEPS.indexOf(s) <= STEPS.indexOf(status) ? 'done' : ''}>${statusWords(s)}</li>`)}
    </ol>`}
    ${o.shipment && html`<p>Shipped with ${o.shipment.carrier}, tracking <span class="mono">${o.shipment.tracking_number}</span></p>`}
    <table class="lines">
      <caption class="visually-hidden">Order lines</caption>
      <thead><tr><th scope="col">Product</th><th scope="col">Quantity</th><th scope="col">Unit price</th></tr></thead>
      <tbody>${o.lines.map((l) => html`<tr><td>${l.name || l.sku}</td><td>${l.quantity}</td><td>${money(l.unit_price)}</td></tr>`)}</tbody>
    </table>
    <${Totals} totals=${{ subtotal: o.subtotal, discount: o.discount ? o.discount.amount : null, tax: o.tax, shipping: o.shipping, total: o.total }} discount=${o.discount} />
    ${o.invoice_number && html`<button id="invoice" onClick=${invoice}>Download invoice (PDF)</button>`}
    <${ErrorNote} error=${invoiceError} />
    ${['placed', 'stock_reserved', 'payment_authorised', 'confirmed'].includes(status) &&
    html`<button class="secondary" onClick=${cancel}>Cancel order</button>`}
  </div>`;
}

export function Orders() {
  const orders = useLoad(() => api('/orders?limit=50'), []);
  if (!currentUser()) {
    navigate('/signin?next=/orders', { replace: true });
    return null;
  }
  if (orders.loading) return html`<${Loading} />`;
  if (orders.error) return html`<${ErrorNote} error=${orders.error} />`;
  return html`<div>
    <h1>Your orders</h1>
    ${orders.data.items.length === 0 && html`<p>No orders yet.</p>`}
    <ul class="list">
      ${orders.data.items.map(
        (o) => html`<li><${Link} href=${`/orders/${o.id}`}>${new Date(o.placed_at).toLocaleString()}<//> · ${statusWords(o.status)} · ${money(o.total)}</li>`,
      )}
    </ul>
  </div>`;
}

export function SignIn({ query }) {
  const next = safeNext(query.get('next'));
  return html`<div class="narrow">
    <h1>Sign in</h1>
    <${Form}
      id="signin"
      label="Sign in"
      busyLabel="Signing in…"
      fields=${[
        { name: 'email', label: 'E-mail', type: 'email', autocomplete: 'email' },
        { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' },
      ]}
      submit=${async (v) => {
        await signIn(v.email, v.password);
        navigate(next, { replace: true });
      }}
    />
    <p><${Link} href=${`/register?next=${encodeURIComponent(next)}`}>Create an account<//> · <${Link} href="/reset">Forgot your password?<//></p>
  </div>`;
}

export function Register({ query }) {
  const next = safeNext(query.get('next'));
  return html`<div class="narrow">
    <h1>Create an account</h1>
    <${Form}
      id="register"
      label="Create account"
      busyLabel="Creating…"
      fields=${[
        { name: 'name', label: 'Name', autocomplete: 'name' },
        { name: 'email', label: 'E-mail', type: 'email', autocomplete: 'email' },
        { name: 'password', label: 'Password', type: 'password', autocomplete: 'new-password', hint: 'At least 12 characters.' },
      ]}
      submit=${async (v) => {
        await register(v.name, v.email, v.password);
        navigate(next, { replace: true });
      }}
    />
  </div>`;
}

export function Reset({ query }) {
  // The mailed token, kept in the page and out of the address bar and history.
  const [token] = useState(() => query.get('token'));
  useEffect(() => {
    if (query.get('token')) history.replaceState(null, '', '/reset?confirm=1');
  }, []);
  const [sent, setSent] = useState(false);
  const [done, setDone] = useState(false);
  if (token) {
    return html`<div class="narrow">
      <h1>Choose a new password</h1>
      ${done
        ? html`<p class="success" role="status">Your password is changed. <${Link} href="/signin">Sign in<//></p>`
        : html`<${Form}
            id="reset-confirm"
            label="Set password"
            fields=${[{ name: 'new_password', label: 'New password', type: 'password', autocomplete: 'new-password' }]}
            submit=${async (v) => {
              await api('/auth/password-reset/confirm', { method: 'POST', body: { token, new_password: v.new_password } });
              setDone(true);
            }}
          />`}
    </div>`;
  }
  return html`<div class="narrow">
    <h1>Reset your password</h1>
    ${sent
      ? html`<p class="success" role="status">If the address has an account, a reset link is on its way.</p>`
      : html`<${Form}
          id="reset"
          label="Send reset link"
          fields=${[{ name: 'email', label: 'E-mail', type: 'email', autocomplete: 'email' }]}
          submit=${async (v) => {
            await api('/auth/password-reset', { method: 'POST', body: { email: v.email } });
            setSent(true);
          }}
        />`}
  </div>`;
}

export function Account() {
  const me = useLoad(() => api('/users/me'), []);
  const [saved, setSaved] = useState(false);
  if (!currentUser()) {
    navigate('/signin?next=/account', { replace: true });
    return null;
  }
  if (me.loading) return html`<${Loading} />`;
  if (me.error) return html`<${ErrorNote} error=${me.error} />`;
  const u = me.data;
  return html`<div class="narrow">
    <h1>Your account</h1>
    <p>${u.name} · ${u.email}</p>
    <${Form}
      id="preferences"
      label="Save preferences"
      fields=${[
        { name: 'marketing_emails', label: 'Send me news of new products', type: 'checkbox', value: !!u.marketing_emails },
        { name: 'phone', label: 'Mobile number (with country code, e.g. +49 151 1234567)', type: 'tel', autocomplete: 'tel', required: false, value: u.phone || '' },
        { name: 'sms', label: 'Text me when an order ships or is cancelled', type: 'checkbox', value: !!u.sms },
      ]}
      submit=${async (v) => {
        const phone = (v.phone || '').trim();
        // A new number clears the SMS opt-in, so it is saved before the preferences.
        if (phone !== (u.phone || '')) {
          await api('/users/me', { method: 'PATCH', body: { phone: phone || null } });
        }
        await api('/users/me/preferences', { method: 'PUT', body: { marketing_emails: !!v.marketing_emails, sms: !!v.sms && !!phone } });
        setSaved(true);
      }}
    />
    ${saved && html`<p class="success" role="status">Saved.</p>`}
  </div>`;
}
