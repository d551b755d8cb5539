// The `cairn` operator CLI, and the embedded stack `cairn up` runs (end-to-end tests drive it).
export { main } from './main.ts';
export { startStack, type Stack, type StackOptions, type ServiceHealth } from './stack/embedded-stack.ts';
export { startDemoVm, matchWritePrefix, demoBaseBlock, DEMO_BLOCK, type DemoVm, type DemoWrite } from './stack/demo-vm.ts';
export { startHub, ensureHubStream, HUB_SITE, type Hub, type HubOptions } from './stack/hub-stack.ts';
export { silenceStep, type SiteHealth, type SilenceState } from './stack/site-health.ts';
export { siteStatus, type GlobalPolicyStatus, type GlobalPolicySiteStatus } from './stack/global-policies.ts';
