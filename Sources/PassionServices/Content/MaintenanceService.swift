import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Maintenance`: the daily jobs on demand, and the integrity check, for admins.
public struct MaintenanceService: Maintenance.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    public func run(request: RunJobRequest, context: ServerContext) async throws -> RunJobResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "maintenance.run", resourceType: "job", resourceID: String(request.job.prefix(64))) {
            guard let job = MaintenanceJob.all.first(where: { $0.name == request.job }) else {
                throw Validate.invalid("job", "must be one of \(MaintenanceJob.all.map(\.name).joined(separator: ", "))")
            }
            let changed = try await SessionMaintenance(pool: content.pool, now: content.now).run(job, origin: origin, deadline: context.deadline)
            return RunJobResponse.with {
                $0.job = job.name
                $0.affected = Int64(changed)
            }
        }
    }

    public func integrityCheck(request: IntegrityCheckRequest, context: ServerContext) async throws -> IntegrityCheckResponse {
        let problems = try await IntegrityCheck.run(content.pool)
        return IntegrityCheckResponse.with {
            $0.problems = problems.map { problem in
                PassionAPI.IntegrityProblem.with {
                    $0.check = problem.check
                    $0.detail = problem.detail
                }
            }
        }
    }
}
