// Small shared widgets: page frame, tables, badges, progress, formatting, errors.
import type { ComponentChildren } from 'preact';
import type { JobState } from './api.ts';

export function Page(props: { title: string; actions?: ComponentChildren; children: ComponentChildren }) {
  return (
    <section class="page" aria-labelledby="page-title">
      <header class="page-head">
        <h1 id="page-title" tabIndex={-1}>{props.title}</h1>
        {props.actions ? <div class="actions">{props.actions}</div> : null}
      </header>
      {props.children}
    </section>
  );
}

export function Loading(props: { what: string }) {
  return <p class="muted" role="status">Loading {props.what}…</p>;
}

export function ErrorBox(props: { error: unknown }) {
  if (!props.error) return null;
  return <p class="error" role="alert">{(props.error as Error).message ?? String(props.error)}</p>;
}

export function Empty(props: { children: ComponentChildren }) {
  return <p class="muted empty">{props.children}</p>;
}

export function StateBadge(props: { state: JobState | string }) {
  return <span class={`badge state-${props.state}`} data-state={props.state}>{props.state}</span>;
}

export function Progress(props: { percent: number | undefined; label: string }) {
  const p = props.percent ?? 0;
  return (
    <div class="progress-wrap">
      <progress class="progress" max={100} value={p} aria-label={props.label} data-percent={p} />
      <span class="progress-text" aria-hidden="true">{props.percent === undefined ? '—' : `${p}%`}</span>
    </div>
  );
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  let v = n; let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${UNITS[i]}`;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function Time(props: { iso: string | null | undefined }) {
  return props.iso ? <time dateTime={props.iso}>{when(props.iso)}</time> : <span>—</span>;
}

export function shortId(id: string): string {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}
