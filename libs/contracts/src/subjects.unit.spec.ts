import { describe, expect, it } from 'vitest';
import {
  InvalidSubjectError, commandSubject, eventStreamName, eventSubject, eventSubjectFilter, parseCommandSubject,
  parseEventSubject, progressSubject, streamCategory, workSubject,
} from './subjects.ts';

describe('subjects', () => {
  it('builds and parses event subjects with the site prefix', () => {
    expect(eventSubject('site-a', 'job-42')).toBe('cairn.site-a.evt.job.job-42');
    expect(parseEventSubject('cairn.site-a.evt.job.job-42')).toEqual({ site: 'site-a', category: 'job', streamId: 'job-42' });
    expect(eventSubjectFilter('site-a')).toBe('cairn.site-a.evt.>');
    expect(eventSubjectFilter('site-a', 'vm')).toBe('cairn.site-a.evt.vm.*');
    expect(streamCategory('restorepoint-a-b')).toBe('restorepoint');
  });

  it('builds command, progress and work subjects and the stream name', () => {
    expect(commandSubject('s1', 'scheduler', 'RequestBackup')).toBe('cairn.s1.cmd.scheduler.RequestBackup');
    expect(parseCommandSubject('cairn.s1.cmd.scheduler.RequestBackup')).toEqual({ site: 's1', service: 'scheduler', name: 'RequestBackup' });
    expect(progressSubject('s1', 'j1')).toBe('cairn.s1.progress.j1');
    expect(workSubject('s1', 'transfers')).toBe('cairn.s1.work.transfers');
    expect(eventStreamName('site-a')).toBe('CAIRN_EVT_SITE_A');
  });

  it('refuses tokens with separators, wildcards or whitespace', () => {
    for (const bad of ['job-a.b', 'job-*', 'job->', 'job-a b', 'job-\t', '', 'job', 'job-', '-x']) {
      expect(() => eventSubject('s1', bad), bad).toThrow(InvalidSubjectError);
    }
    expect(() => eventSubject('Site A', 'job-1')).toThrow(InvalidSubjectError);
    expect(() => commandSubject('s1', 'sched.uler', 'x')).toThrow(/not a valid subject token/);
    expect(() => parseEventSubject('cairn.s1.evt.vm.job-1')).toThrow(/does not match/);
    expect(() => parseEventSubject('cairn.s1.cmd.vm.vm-1')).toThrow(InvalidSubjectError);
  });
});
