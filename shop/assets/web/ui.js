// Small pieces every page uses: navigation, forms whose problems appear by their fields.
import { html, useState, useEffect } from './vendor/preact-htm.module.js';
import { Problem } from './api.js';

const routeListeners = new Set();

/** `next` if it is a path of this shop, else `/` (never another site). */
export function safeNext(next) {
  return typeof next === 'string' && /^\/(?![\/\\])/.test(next) ? next : '/';
}

export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  for (const listener of routeListeners) listener();
  window.scrollTo(0, 0);
}

export function useLocation() {
  const [location, setLocation] = useState(() => ({ path: location_path(), query: new URLSearchParams(window.location.search) }));
  useEffect(() => {
    const update = () => setLocation({ path: location_path(), query: new URLSearchParams(window.location.search) });
    routeListeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      routeListeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return location;
}

function location_path() {
  return window.location.pathname;
}

/** A link that navigates without reloading the page. */
export function Link({ href, children, ...rest }) {
  const click = (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    navigate(href);
  };
  return html`<a href=${href} onClick=${click} ...${rest}>${children}</a>`;
}

/** Loads `load()` when `deps` change: `{ data, error, loading, reload }`. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { ...state, reload: () => setTick((t) => t + 1), set: (data) => setState({ data, error: null, loading: false }) };
}

export function Loading({ what = 'Loading' }) {
  return html`<p class="muted" role="status">${what}…</p>`;
}

export function ErrorNote({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message || String(error)}</p>`;
}

/**
 * A form that calls `submit(values)`; a problem that names a field is shown by that field,
 * any other problem above the button.
 */
export function Form({ fields, submit, label, busyLabel, children, id }) {
  const [values, setValues] = useState(() => Object.fromEntries(fields.map((f) => [f.name, f.value ?? ''])));
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const onSubmit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      await submit(values);
    } catch (error) {
      setProblem(error instanceof Problem ? error : new Problem(0, { detail: String(error.message || error) }));
    } finally {
      setBusy(false);
    }
  };
  // The API names a field by its path in the body (`shipping_address.line1`).
  const names = (f) => problem && problem.field && (problem.field === f || problem.field.endsWith(`.${f}`));
  const general = problem && !fields.some((f) => names(f.name)) ? problem : null;
  return html`<form onSubmit=${onSubmit} id=${id} novalidate>
    ${fields.map((f) => {
      const inputId = `${id || 'f'}-${f.name}`;
      const error = names(f.name) ? problem.message : null;
      const set = (e) => {
        const value = f.type === 'checkbox' ? e.target.checked : e.target.value;
        setValues((v) => ({ ...v, [f.name]: value }));
      };
      const described = [error && `${inputId}-error`, f.hint && `${inputId}-hint`].filter(Boolean).join(' ') || undefined;
      const input =
        f.type === 'select'
          ? html`<select id=${inputId} name=${f.name} value=${values[f.name]} onChange=${set} aria-invalid=${!!error}>
              ${f.options.map(([value, text]) => html`<option value=${value}>${text}</option>`)}
            </select>`
          : html`<input
              id=${inputId}
              name=${f.name}
              type=${f.type || 'text'}
              value=${f.type === 'checkbox' ? undefined : values[f.name]}
              checked=${f.type === 'checkbox' ? values[f.name] : undefined}
              autocomplete=${f.autocomplete || 'off'}
              required=${f.required}
              aria-invalid=${!!error}
              aria-describedby=${described}
              onInput=${set}
            />`;
      return html`<div class=${`field ${f.type === 'checkbox' ? 'check' : ''}`}>
        <label for=${inputId}>${f.label}</label>
        ${input}
        ${error && html`<span class="field-error" id=${`${inputId}-error`} role="alert">${error}</span>`}
        ${f.hint && html`<span class="hint" id=${`${inputId}-hint`}>${f.hint}</span>`}
      </div>`;
    })}
    ${children}
    ${general && html`<p class="error" role="alert" data-code=${general.code}>${general.message}</p>`}
    <button type="submit" disabled=${busy}>${busy ? busyLabel || label : label}</button>
  </form>`;
}

export function statusWords(status) {
  return (
    {
      placed: 'Placed',
      stock_reserved: 'Stock reserved',
      payment_authorised: 'Payment authorised',
      confirmed: 'Confirmed',
      shipped: 'Shipped',
      delivered: 'Delivered',
      cancelled: 'Cancelled',
    }[status] || status
  );
}

export function reasonWords(reason) {
  return (
    {
      out_of_stock: 'some items were out of stock',
      payment_declined: 'the payment was declined',
      payment_timeout: 'the payment did not answer in time',
      reservation_expired: 'the items were held for too long without payment',
      cancelled_by_customer: 'it was cancelled on request',
    }[reason] || (reason ? reason.replaceAll('_', ' ') : 'no reason given')
  );
}
