// Disjoint half-open ranges, kept sorted and merged: tracks which bytes of a READ reply
// have arrived so overlapping or duplicate chunks are caught and a reply that claims
// success without covering the whole request is refused.

export class RangeSet {
  // Flat [start0, end0, start1, end1, …], sorted, with no two ranges touching.
  private readonly bounds: number[] = [];
  private total = 0;

  get covered(): number {
    return this.total;
  }

  /** Adds [start, end); returns false (and changes nothing) if it overlaps a present range. */
  add(start: number, end: number): boolean {
    if (end <= start) return false;
    const b = this.bounds;
    const n = b.length;
    // Fast path: chunks usually arrive in order.
    if (n === 0 || start >= b[n - 1]!) {
      if (n > 0 && start === b[n - 1]) b[n - 1] = end;
      else b.push(start, end);
      this.total += end - start;
      return true;
    }
    // Binary search for the first range whose end is > start.
    let lo = 0;
    let hi = n / 2;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (b[mid * 2 + 1]! > start) hi = mid;
      else lo = mid + 1;
    }
    const i = lo * 2;
    if (i < n && b[i]! < end) return false;
    const joinsLeft = i > 0 && b[i - 1] === start;
    const joinsRight = i < n && b[i] === end;
    if (joinsLeft && joinsRight) {
      b[i - 1] = b[i + 1]!;
      b.splice(i, 2);
    } else if (joinsLeft) {
      b[i - 1] = end;
    } else if (joinsRight) {
      b[i] = start;
    } else {
      b.splice(i, 0, start, end);
    }
    this.total += end - start;
    return true;
  }
}
