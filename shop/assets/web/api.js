// The shop's JSON API, as the pages use it: the access token in memory only, refreshed
// silently before it expires from the HttpOnly session cookie; a guest's cart token in local
// storage; every error as the API's problem body.

const API = '/api/v1';
const CART_KEY = 'shop.cart';
const NAMES_KEY = 'shop.names';
// Whether this browser holds a session cookie (the cookie itself is out of scripts' reach):
// a page that opens without it does not ask the refresh route, which counts against limits.
const SIGNED_IN_KEY = 'shop.signed-in';

// `minPosition`: the log position of this page's last write, sent as `X-Min-Position` so a
// read shows it (read-your-writes).
const session = { token: null, expiresAt: 0, user: null, timer: null, minPosition: 0 };
const listeners = new Set();

export function onSession(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function changed() {
  for (const listener of listeners) listener(session.user);
}

export function currentUser() {
  return session.user;
}

export function isAdmin() {
  return !!session.user && (session.user.roles || []).includes('admin');
}

/** A problem answer of the API (RFC 9457), with its `code` and, where it names one, `field`. */
export class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `request failed (${status})`);
    this.status = status;
    this.code = body && body.code;
    this.field = body && body.field;
    this.body = body || {};
  }
}

export function guestCart() {
  try {
    return JSON.parse(localStorage.getItem(CART_KEY) || 'null');
  } catch {
    return null;
  }
}

export function setGuestCart(cart) {
  if (cart) localStorage.setItem(CART_KEY, JSON.stringify(cart));
  else localStorage.removeItem(CART_KEY);
}

/** Product names and ids by SKU, as this browser has seen them (carts list SKUs). */
export function rememberProduct(product) {
  const names = knownProducts();
  names[product.sku] = { id: product.id, name: product.name };
  localStorage.setItem(NAMES_KEY, JSON.stringify(names));
}

export function knownProducts() {
  try {
    return JSON.parse(localStorage.getItem(NAMES_KEY) || '{}');
  } catch {
    return {};
  }
}

async function send(path, { method = 'GET', body, headers = {}, accept } = {}) {
  const h = { ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (accept) h.Accept = accept;
  if (session.token) h.Authorization = `Bearer ${session.token}`;
  const cart = guestCart();
  if (cart && !h['X-Cart-Token']) h['X-Cart-Token'] = cart.token;
  if (path.startsWith('/auth/browser/')) h['X-Shop-Csrf'] = '1';
  if (method === 'GET' && session.minPosition && !h['X-Min-Position']) h['X-Min-Position'] = String(session.minPosition);
  return fetch(API + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
}

async function read(response) {
  const type = response.headers.get('Content-Type') || '';
  if (response.status === 204) return null;
  if (type.includes('json')) return response.json();
  return response.blob();
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls the API; answers the body, or throws a `Problem`. */
export async function api(path, options = {}) {
  if (session.token && Date.now() > session.expiresAt - 30_000) await refresh();
  let response = await send(path, options);
  if (response.status === 401 && session.token && !path.startsWith('/auth/')) {
    if (await refresh()) response = await send(path, options);
  }
  // A view still behind this page's last write: wait as told, then read it as it is.
  for (let attempt = 0; response.status === 503 && (options.method || 'GET') === 'GET' && attempt < 3; attempt++) {
    const body = await response.clone().json().catch(() => ({}));
    if (body.code !== 'projection_behind') break;
    await pause(Math.min(1000, 1000 * Number(response.headers.get('Retry-After') || 1)));
    response = await send(path, attempt < 2 ? options : { ...options, headers: { ...options.headers, 'X-Min-Position': '0' } });
  }
  const body = await read(response);
  if (!response.ok) throw new Problem(response.status, body);
  if (options.method && options.method !== 'GET' && body && Number.isInteger(body.position)) {
    session.minPosition = Math.max(session.minPosition, body.position);
  }
  return options.full ? { body, headers: response.headers, status: response.status } : body;
}

function adopt(tokens) {
  session.token = tokens.access_token;
  session.expiresAt = Date.now() + tokens.expires_in * 1000;
  clearTimeout(session.timer);
  // Silently, a minute before the token expires.
  session.timer = setTimeout(refresh, Math.max(5_000, (tokens.expires_in - 60) * 1000));
}

async function loadUser() {
  session.user = await api('/users/me');
  changed();
}

function forget() {
  session.token = null;
  session.user = null;
  localStorage.removeItem(SIGNED_IN_KEY);
  clearTimeout(session.timer);
  changed();
}

/**
 * One rotation of the session cookie for this page. Every tab of the browser shares the
 * cookie, and a refresh token presented twice ends the whole login (reuse detection): tabs
 * take turns through a Web Lock, so each presents the cookie the one before it set.
 */
export function rotateSession() {
  const rotate = async () => {
    const response = await send('/auth/browser/refresh', { method: 'POST' });
    if (response.status === 401) {
      forget();
      return false;
    }
    // Limited or unavailable: the session may well be alive; try again later.
    if (!response.ok) return false;
    adopt(await response.json());
    return true;
  };
  return navigator.locks ? navigator.locks.request('shop-session', rotate) : rotate();
}

let refreshing = null;
/** A new access token from the session cookie; false when there is no session. */
export function refresh() {
  if (!refreshing) {
    refreshing = rotateSession().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** At start: the session the cookie names, if this browser has one. */
export async function restore() {
  if (localStorage.getItem(SIGNED_IN_KEY) && (await refresh())) await loadUser();
}

export async function signIn(email, password) {
  const tokens = await api('/auth/browser/login', { method: 'POST', body: { email, password } });
  localStorage.setItem(SIGNED_IN_KEY, '1');
  adopt(tokens);
  await loadUser();
  // The guest cart went into the customer's; kept while it is still open (a merge that could
  // not be made is tried again at the next sign-in).
  const guest = guestCart();
  if (guest) {
    const cart = await api(`/carts/${encodeURIComponent(guest.id)}`).catch((e) => (e instanceof Problem && e.status === 404 ? null : { status: 'open' }));
    if (!cart || cart.status !== 'open') setGuestCart(null);
  }
}

export async function register(name, email, password) {
  await api('/auth/register', { method: 'POST', body: { name, email, password } });
  await signIn(email, password);
}

/** Ends the session; if the shop cannot end it, says so and stays signed in. */
export async function signOut() {
  await api('/auth/browser/logout', { method: 'POST' });
  forget();
}

export function newKey() {
  return crypto.randomUUID();
}

/** Reads a Server-Sent Events stream with the access token; calls `onEvent(type, data)`. */
export function stream(path, onEvent) {
  const controller = new AbortController();
  let lastId = null;
  (async () => {
    while (!controller.signal.aborted) {
      try {
        if (session.token && Date.now() > session.expiresAt - 30_000) await refresh();
        const headers = { Accept: 'text/event-stream' };
        if (session.token) headers.Authorization = `Bearer ${session.token}`;
        if (lastId) headers['Last-Event-ID'] = lastId;
        const response = await fetch(API + path, { headers, signal: controller.signal });
        if (!response.ok || !response.body) throw new Error(`stream ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let type = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) type = line.slice(6).trim();
              else if (line.startsWith('data:')) data += line.slice(5).trim();
              else if (line.startsWith('id:')) lastId = line.slice(3).trim();
            }
            if (data) {
              // The event's id is its log position: reads after it show it.
              if (/^\d+$/.test(lastId || '')) session.minPosition = Math.max(session.minPosition, Number(lastId));
              let parsed = data;
              try {
                parsed = JSON.parse(data);
              } catch {
                // a plain-text event
              }
              onEvent(type, parsed);
            }
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  return () => controller.abort();
}

export function money(m) {
  if (!m) return '';
  const digits = { JPY: 0, KRW: 0 }[m.currency] ?? 2;
  return new Intl.NumberFormat('en', { style: 'currency', currency: m.currency, minimumFractionDigits: digits }).format(
    m.amount / 10 ** digits,
  );
}
