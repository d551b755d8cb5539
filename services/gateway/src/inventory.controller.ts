// VMs and restore points, as the catalogue knows them.
import { Controller, Inject } from '@nestjs/common';
import { ReplicaView, RestorePointView, TestRestoreView, VmView, type QueryRequest } from '@cairn/catalogue-client';
import { GatewayService } from './gateway.service.ts';
import { Input, Route } from './route.decorator.ts';
import { Items, ListReplicasQuery, ListTestRestoresQuery, ListRestorePointsQuery, ListVmsQuery, RestorePointParams, VmParams } from './gateway.schemas.ts';

@Controller()
export class InventoryController {
  constructor(@Inject(GatewayService) private readonly gateway: GatewayService) {}

  @Route({ method: 'GET', path: '/v1/vms', operationId: 'listVms', tag: 'inventory', summary: 'VMs discovered on the site\'s hypervisors, by name', query: ListVmsQuery, response: Items(VmView) })
  listVms(@Input('query') q: QueryRequest<'vm.list'>) {
    return this.gateway.query('vm.list', q);
  }

  @Route({ method: 'GET', path: '/v1/vms/:vmId', operationId: 'getVm', tag: 'inventory', summary: 'One VM with its disks', params: VmParams, response: VmView, problems: [404] })
  getVm(@Input('params') p: { vmId: string }) {
    return this.gateway.query('vm.get', p);
  }

  @Route({
    method: 'GET', path: '/v1/restore-points', operationId: 'listRestorePoints', tag: 'restore-points',
    summary: 'Restore points, newest first', query: ListRestorePointsQuery, response: Items(RestorePointView),
  })
  listRestorePoints(@Input('query') q: QueryRequest<'restorePoint.list'>) {
    return this.gateway.query('restorePoint.list', q);
  }

  @Route({
    method: 'GET', path: '/v1/restore-points/:restorePointId', operationId: 'getRestorePoint', tag: 'restore-points',
    summary: 'One restore point with its disks', params: RestorePointParams, response: RestorePointView, problems: [404],
  })
  getRestorePoint(@Input('params') p: { restorePointId: string }) {
    return this.gateway.query('restorePoint.get', p);
  }

  @Route({
    method: 'GET', path: '/v1/replicas', operationId: 'listReplicas', tag: 'restore-points',
    summary: 'Copies of restore points at other sites (at the hub: of every site), newest first', query: ListReplicasQuery, response: Items(ReplicaView),
  })
  listReplicas(@Input('query') q: QueryRequest<'replica.list'>) {
    return this.gateway.query('replica.list', q);
  }

  @Route({
    method: 'GET', path: '/v1/test-restores', operationId: 'listTestRestores', tag: 'restore-points',
    summary: 'Test restores (restore points booted in isolation and judged by their checks), newest first', query: ListTestRestoresQuery, response: Items(TestRestoreView),
  })
  listTestRestores(@Input('query') q: QueryRequest<'testRestore.list'>) {
    return this.gateway.query('testRestore.list', q);
  }
}
