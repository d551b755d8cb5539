// Test harness: real servers on free loopback ports in temp dirs, always cleaned up.
// Only test code imports this library.
export { createHarness, useHarness, type Harness } from './harness.ts';
export { startS3Endpoint, type S3Endpoint } from './s3-endpoint.ts';
export { waitFor } from './wait-for.ts';
export { buildGuestImage, bootGuest, guestMarker, guestQemuArgs, hostKernel, type GuestImage, type GuestImageOptions, type BootedGuest, type BootedGuestOptions } from './guest.ts';
export { ensureLibvirtd, defineGuestDomain, guestDomainXml, virsh, LIBVIRT_URI, type EnsureLibvirtdOptions, type GuestDomain, type GuestDomainOptions } from './libvirt.ts';
export { libvirtTlsFixture, libvirtTlsUri, ensureTestPki, makeCa, issueCert, writeLibvirtdTestConfig, TEST_PKI_DIR, LIBVIRTD_TLS_PORT, LIBVIRTD_TEST_CONFIG, type LibvirtTlsFixture } from './libvirt-tls.ts';
export * from './files-disk.ts';
export { startTestSshd, type TestSshd } from './sshd.ts';
export { startHttpCollector, hecEventIds, type HttpCollector, type CollectedRequest } from './http-collector.ts';
export { startSmtpSink, type SmtpSink, type ReceivedMail } from './smtp-sink.ts';
export { startVcsim, buildVcsim, type Vcsim } from './vcsim.ts';
export { containerEngine, startKurrentDbContainer, startMinioContainer, KURRENTDB_IMAGE, MINIO_IMAGE, type ContainerEngine, type ContainerServer, type S3ContainerServer } from './containers.ts';
export { createTestDatabase, postgresReachable, TEST_POSTGRES_URL, type TestPostgresDatabase } from './postgres.ts';
