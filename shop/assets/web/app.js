// The shop in the browser: one page, routes by path, every screen from /api/v1.
import { html, render, useState, useEffect } from './vendor/preact-htm.module.js';
import { restore, onSession, currentUser, isAdmin, signOut } from './api.js';
import { Link, navigate, useLocation } from './ui.js';
import * as store from './store.js';
import * as admin from './admin.js';

function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function route(path, query) {
  const parts = path.split('/').filter(Boolean).map(decode);
  const [first, second] = parts;
  switch (first) {
    case undefined:
      return html`<${store.Home} />`;
    case 'c':
      return html`<${store.Listing} category=${parts.slice(1).join('/')} query=${query} />`;
    case 'p':
      return html`<${store.ProductPage} id=${second} />`;
    case 'search':
      return html`<${store.Search} query=${query} />`;
    case 'cart':
      return html`<${store.CartPage} />`;
    case 'checkout':
      return html`<${store.Checkout} />`;
    case 'orders':
      return second ? html`<${store.OrderPage} id=${second} />` : html`<${store.Orders} />`;
    case 'signin':
      return html`<${store.SignIn} query=${query} />`;
    case 'register':
      return html`<${store.Register} query=${query} />`;
    case 'reset':
      return html`<${store.Reset} query=${query} />`;
    case 'account':
      return html`<${store.Account} />`;
    case 'admin':
      return html`<${admin.Admin} section=${second || 'dashboard'} rest=${parts.slice(2)} query=${query} />`;
    default:
      return html`<div><h1>Not found</h1><p>No page here. <${Link} href="/">Back to the shop<//></p></div>`;
  }
}

function Header({ user }) {
  const [problem, setProblem] = useState(null);
  const out = async () => {
    try {
      await signOut();
      setProblem(null);
      navigate('/');
    } catch (e) {
      // Not signed out: the session is still open on the shop's side.
      setProblem(e);
    }
  };
  return html`<header class="top">
    <${Link} href="/" class="brand">shop<//>
    <${store.SearchBox} />
    <nav aria-label="Account">
      <${Link} href="/cart">Cart<//>
      ${user
        ? html`<${Link} href="/orders">Orders<//>
            <${Link} href="/account">${user.name}<//>
            ${isAdmin() && html`<${Link} href="/admin">Admin<//>`}
            <button class="link" onClick=${out}>Sign out</button>`
        : html`<${Link} href="/signin">Sign in<//>`}
    </nav>
    ${problem && html`<p class="error banner" role="alert">Not signed out: ${problem.message}</p>`}
  </header>`;
}

function App() {
  const location = useLocation();
  const [user, setUser] = useState(currentUser());
  const [ready, setReady] = useState(false);
  useEffect(() => {
    const off = onSession(setUser);
    restore()
      .catch(() => {})
      .finally(() => setReady(true));
    return off;
  }, []);
  useEffect(() => {
    // A new page: its title, and focus at its start (not while the shopper types a search).
    const heading = document.querySelector('main h1');
    document.title = heading ? `${heading.textContent} · shop` : 'shop';
    const main = document.getElementById('main');
    if (main && document.activeElement?.id !== 'q') main.focus({ preventScroll: true });
  }, [location.path, location.query.toString(), ready]);
  return html`<${Header} user=${user} />
    <main id="main" tabindex="-1">${ready ? route(location.path, location.query) : html`<p class="muted">Loading…</p>`}</main>
    <footer class="bottom"><span>shop · an event-sourced commerce backend</span> <a href="/docs">API</a></footer>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
