import { describe, expect, it } from 'vitest';
import { clearedSessionCookie, cookieValue, csrfRefusal, sessionCookie, SESSION_COOKIE } from './session.ts';

describe('console session cookie', () => {
  it('is HttpOnly and SameSite=Strict, Secure over HTTPS, and reads back', () => {
    const c = sessionCookie('tok en', true);
    expect(c).toMatch(/HttpOnly/);
    expect(c).toMatch(/SameSite=Strict/);
    expect(c).toMatch(/; Secure$/);
    expect(sessionCookie('t', false)).not.toMatch(/Secure/);
    const value = c.split(';')[0]!;
    expect(cookieValue(`a=1; ${value}; b=2`, SESSION_COOKIE)).toBe('tok en');
    expect(clearedSessionCookie(false)).toMatch(/Max-Age=0/);
  });

  it('finds nothing in an absent, foreign or malformed header', () => {
    expect(cookieValue(undefined, SESSION_COOKIE)).toBeUndefined();
    expect(cookieValue('other=1', SESSION_COOKIE)).toBeUndefined();
    expect(cookieValue(`${SESSION_COOKIE}=%E0%A4%A`, SESSION_COOKIE)).toBeUndefined();
  });
});

describe('CSRF check of cookie-authenticated requests', () => {
  const host = { host: 'gw:8080' };
  it('lets reads through', () => {
    expect(csrfRefusal({ method: 'GET', headers: { ...host, origin: 'https://evil.example' } })).toBeUndefined();
  });
  it('refuses a change without the console header', () => {
    expect(csrfRefusal({ method: 'POST', headers: host })).toMatch(/x-cairn-csrf/);
  });
  it('refuses a change from another origin or an opaque one', () => {
    expect(csrfRefusal({ method: 'POST', headers: { ...host, 'x-cairn-csrf': '1', origin: 'http://evil:8080' } })).toMatch(/not from this gateway/);
    expect(csrfRefusal({ method: 'POST', headers: { ...host, 'x-cairn-csrf': '1', origin: 'null' } })).toMatch(/opaque/);
    expect(csrfRefusal({ method: 'POST', headers: { ...host, 'x-cairn-csrf': '1', origin: 'not a url' } })).toMatch(/not a URL/);
  });
  it('accepts a change from the console', () => {
    expect(csrfRefusal({ method: 'POST', headers: { ...host, 'x-cairn-csrf': '1', origin: 'http://gw:8080' } })).toBeUndefined();
    expect(csrfRefusal({ method: 'POST', headers: { ...host, 'x-cairn-csrf': '1' } })).toBeUndefined();
  });
});
