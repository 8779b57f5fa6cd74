-- AlterEnum
ALTER TYPE "WorkflowRunStepType" ADD VALUE 'INTERRUPTION';
