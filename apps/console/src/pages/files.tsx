// The restore wizard's "Files" step: a file browser over the file-restore API (a directory at a
// time, `/` lists the disk's file systems), each file downloadable on its own and any selection
// as one zip. Downloads are plain links to the gateway (same origin, the session cookie), so the
// browser streams them to disk and can resume a broken one; nothing passes through this page.
import { useState } from 'preact/hooks';
import { useQuery } from '@tanstack/preact-query';
import { api, qs, type RestorePoint } from '../api.ts';
import { Empty, ErrorBox, Loading, bytes, when } from '../ui.tsx';

interface Entry { path: string; name: string; type: 'file' | 'directory' | 'symlink' | 'other'; size: number; mode: number; uid: number; gid: number; mtime: string; target?: string }
interface Listing { restorePointId: string; disk: string; entries: Entry[]; truncated: boolean; filesystems: { name: string; type: string; mounted: boolean; reason?: string }[] }

export function modeString(e: Pick<Entry, 'type' | 'mode'>): string {
  const t = { file: '-', directory: 'd', symlink: 'l', other: '?' }[e.type];
  let out = '';
  for (let i = 0; i < 9; i++) out += e.mode & (1 << (8 - i)) ? 'rwxrwxrwx'[i] : '-';
  return t + out;
}

/** The gateway's download links for a restore point's disk. */
export function downloadUrl(point: string, disk: string, paths: readonly string[], zip: boolean): string {
  const base = `/v1/restore-points/${encodeURIComponent(point)}/files`;
  if (!zip) return `${base}/content${qs({ path: paths[0], disk })}`;
  const u = new URLSearchParams({ format: 'zip', disk });
  for (const p of paths) u.append('path', p);
  return `${base}/archive?${u.toString()}`;
}

export function FilesRestore(props: { point: RestorePoint }) {
  const point = props.point.restorePointId;
  const disks = props.point.disks;
  const [disk, setDisk] = useState(disks[0]?.name ?? '');
  const [path, setPath] = useState('/');
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const listing = useQuery({
    queryKey: ['files', point, disk, path],
    queryFn: () => api<Listing>(`/v1/restore-points/${encodeURIComponent(point)}/files${qs({ path, disk })}`),
    staleTime: Infinity, retry: false,
  });
  const go = (p: string) => { setPath(p); };
  const crumbs = path === '/' ? [] : path.split('/').slice(1);
  const toggle = (p: string) => setSelected((s) => { const n = new Set(s); if (n.has(p)) n.delete(p); else n.add(p); return n; });
  const chosen = [...selected];
  return (
    <div class="files" data-files-path={path}>
      {disks.length > 1 ? (
        <label>Disk <select value={disk} onChange={(e) => { setDisk((e.target as HTMLSelectElement).value); setPath('/'); setSelected(new Set()); }}>
          {disks.map((d) => <option key={d.name} value={d.name}>{d.name} ({bytes(d.sizeBytes)})</option>)}
        </select></label>
      ) : null}
      <nav aria-label="Folder" class="crumbs">
        <button type="button" class="link" onClick={() => go('/')} aria-current={path === '/' ? 'location' : undefined}>{disk || 'disk'}</button>
        {crumbs.map((c, i) => {
          const p = `/${crumbs.slice(0, i + 1).join('/')}`;
          return <span key={p}> / <button type="button" class="link" onClick={() => go(p)} aria-current={p === path ? 'location' : undefined}>{c}</button></span>;
        })}
      </nav>
      {listing.isLoading ? <Loading what="the files (the first listing of a restore point starts a file browser: up to a minute or two)" /> : null}
      <ErrorBox error={listing.error} />
      {listing.data ? (
        <>
          {path === '/' ? listing.data.filesystems.filter((f) => !f.mounted).map((f) => <p key={f.name} class="muted">{f.name} ({f.type}): {f.reason}</p>) : null}
          {listing.data.entries.length === 0 ? <Empty>This folder is empty.</Empty> : (
            <div class="table-wrap">
              <table>
                <caption class="muted">{path === '/' ? 'File systems of the disk' : path}{listing.data.truncated ? ` (the first ${listing.data.entries.length} entries)` : ''}</caption>
                <thead><tr><th scope="col"><span class="sr-only">Select</span></th><th scope="col">Name</th><th scope="col">Size</th><th scope="col">Mode</th><th scope="col">Owner</th><th scope="col">Modified</th><th scope="col"><span class="sr-only">Download</span></th></tr></thead>
                <tbody>
                  {listing.data.entries.map((e) => (
                    <tr key={e.path} data-file={e.path}>
                      <td>{e.type === 'file' || e.type === 'directory' || e.type === 'symlink' ? <input type="checkbox" aria-label={`Select ${e.name}`} checked={selected.has(e.path)} onChange={() => toggle(e.path)} /> : null}</td>
                      <td>{e.type === 'directory'
                        ? <button type="button" class="link" onClick={() => go(e.path)}>{e.name}/</button>
                        : <span>{e.name}{e.target !== undefined ? <span class="muted"> → {e.target}</span> : null}</span>}</td>
                      <td>{e.type === 'file' ? bytes(e.size) : ''}</td>
                      <td><code>{modeString(e)}</code></td>
                      <td>{e.uid}:{e.gid}</td>
                      <td>{path === '/' ? '' : when(e.mtime)}</td>
                      <td>{e.type === 'file' ? <a href={downloadUrl(point, listing.data!.disk, [e.path], false)} download={e.name} data-download={e.path}>Download</a> : null}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <p class="actions">
            {chosen.length > 0
              ? <a class="button primary" href={downloadUrl(point, listing.data.disk, chosen, true)} download data-action="download-zip">Download {chosen.length} selected as zip</a>
              : <span class="muted">Select files or folders to download them as one zip.</span>}
          </p>
          <p class="muted">Each download is recorded in the audit trail with your name.</p>
        </>
      ) : null}
    </div>
  );
}
